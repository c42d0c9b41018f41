import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes, type AclEntry } from 'kafkajs';
import { Client, escapeIdentifier, escapeLiteral, Pool } from 'pg';
import { generateSigningKeyPair } from '../../libs/contracts/src/signing';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '../../libs/kafka/src';
import { APP_ROLE, createAppRoleSql } from '../../apps/policy-service/src/database/migrations/1764400150000-AppRoleGrants';
import { applyPortcullisAcls, KafkaUsers, userPrincipal } from '../../deploy/kafka/acls';
import { freePort } from '../../deploy/lib/free-port';
import { KAFKA_SASL_MECHANISM, newScramUser, startKafkaBroker, type KafkaBroker, type ScramUser } from '../../deploy/lib/kafka-broker';
import { warmUpKafka } from '../../deploy/lib/kafka-warm-up';
import { startPostgres, type PostgresServer } from '../../deploy/lib/postgres-server';
import { AdapterWorker } from './adapter-workers';
import { CommandTracker } from './command-tracker';
import { CpuMeter, postmasterPid, processTree } from './proc-stats';
import { PolicyClient, type JwtSettings } from './policy-client';
import type { KafkaConnection } from './worker-protocol';

export const ROOT = resolve(__dirname, '..', '..');
const POLICY_SERVICE_ENTRY = join(ROOT, 'dist', 'apps', 'policy-service', 'main.js');
const PROFILE_PRELOAD = join(ROOT, 'bench', 'tools', 'cpu-profile.preload.cjs');
/** The raw-Kafka baseline's topics and consumer groups start with these (its user may use only those). */
export const BASELINE_TOPIC_PREFIX = 'bench.baseline-';
export const BASELINE_GROUP_PREFIX = 'bench-baseline';
/** The key id the policy service signs decisions under (SIGNING_KEY_ID); adapters trust it by this id. */
const POLICY_KEY_ID = 'policy-bench';

/**
 * Which broker listener the services, the adapters and the raw-Kafka baseline use. `tls` (default): TLS,
 * then SASL/SCRAM-SHA-512 (SASL_SSL, trusting only the run's throwaway CA), each with its own user, ACLs
 * enforced, as deployed. `sasl`: the same without TLS (SASL_PLAINTEXT, loopback). `tooling`: the broker's
 * unauthenticated loopback listener (super user, no ACLs), e.g. if the SASL listener is unavailable.
 * Setup (topics, ACLs, the warm-up) always uses the tooling listener.
 */
export type KafkaListener = 'sasl' | 'tls' | 'tooling';

/** SCRAM users of a run (random passwords); all adapter instances share one user, as the tests' adapters do. */
interface BenchKafkaUsers {
  admin: ScramUser;
  policyService: ScramUser;
  adapter: ScramUser;
  baseline: ScramUser;
}

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

/** Everything a benchmark run starts, and how to stop it again (also on Ctrl-C). */
export class BenchStack {
  private readonly stoppers: { name: string; stop: () => Promise<void> }[] = [];
  private readonly workers = new Set<AdapterWorker>();
  private readonly trackers = new Set<CommandTracker>();
  private stopping?: Promise<void>;
  broker!: KafkaBroker;
  policyDb!: PostgresServer;
  targetDb!: PostgresServer;
  /** The policy service's own database, for the service's timestamps. */
  db!: Pool;
  client!: PolicyClient;
  policyService!: ChildProcess;
  readonly jwt: JwtSettings = { secret: randomBytes(32).toString('hex'), issuer: 'portcullis-local', audience: 'portcullis' };
  /** The policy service's signing key of this run (SIGNING_KEY, a file in the work dir); adapters trust its public half. */
  private readonly policyKey = generateSigningKeyPair();
  private readonly kafkaUsers: BenchKafkaUsers = {
    admin: newScramUser(KafkaUsers.admin),
    policyService: newScramUser(KafkaUsers.policyService),
    adapter: newScramUser(KafkaUsers.adapter()),
    baseline: newScramUser('bench-baseline'),
  };
  kafkaListener: KafkaListener = 'tls';
  /** The PEM of the broker's throwaway CA (set by `start`): what every client of the `tls` listener trusts. */
  private tlsCa = '';
  /** Partitions of every topic (set by `start`). */
  partitions = 6;

  /** Where CPU profiles go when the run profiles (`--profile`), else undefined. */
  profileDir?: string;
  private checkpoints = 0;

  private constructor(
    readonly workDir: string,
    readonly logDir: string,
  ) {}

  /** Profile the policy service and the adapter workers (see bench/tools/cpu-profile.preload.cjs). */
  enableProfiling(): void {
    this.profileDir = join(this.workDir, 'cpu-profiles');
    mkdirSync(this.profileDir, { recursive: true });
  }

  private profilingEnv(label: string): NodeJS.ProcessEnv {
    return this.profileDir ? { BENCH_CPU_PROFILE_DIR: this.profileDir, BENCH_PROCESS_LABEL: label } : {};
  }

  /** With --profile: every profiled process writes its samples since the last checkpoint as `<phase>--…`. */
  async profileCheckpoint(phase: string): Promise<void> {
    if (!this.profileDir) return;
    this.checkpoints += 1;
    writeFileSync(join(this.profileDir, 'checkpoint'), `${this.checkpoints} ${phase}`);
    await Promise.all([
      new Promise((resolveWait) => setTimeout(resolveWait, 1_500)),
      // Statistics are a by-product: a failure to read them costs the statistics, not the run.
      this.writeStatementStats(phase).catch((error: Error) => log(`statement statistics of ${phase} not written: ${error.message}`)),
    ]);
  }

  /**
   * With --profile: the policy database's statements since the last checkpoint (pg_stat_statements), by
   * total execution and planning time, as `<phase>--policy-db-statements.tsv`. Parsing and the protocol are
   * not in it, so statement counts matter as much as their times.
   */
  private async writeStatementStats(phase: string): Promise<void> {
    if (!this.db) return;
    const { rows } = await this.db.query<{ calls: string; exec_ms: number; plan_ms: number; mean_exec_ms: number; rows: string; query: string }>(
      `SELECT calls, round(total_exec_time::numeric, 1)::float AS exec_ms, round(total_plan_time::numeric, 1)::float AS plan_ms,
              round(mean_exec_time::numeric, 3)::float AS mean_exec_ms,
              rows, regexp_replace(query, '\\s+', ' ', 'g') AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time + total_plan_time DESC LIMIT 60`,
    );
    const lines = ['calls\texec_ms\tplan_ms\tmean_exec_ms\trows\tquery', ...rows.map((row) => [row.calls, row.exec_ms, row.plan_ms, row.mean_exec_ms, row.rows, row.query].join('\t'))];
    writeFileSync(join(this.profileDir!, `${phase}--policy-db-statements.tsv`), `${lines.join('\n')}\n`);
    await this.db.query('SELECT pg_stat_statements_reset()');
  }

  static create(): BenchStack {
    const runsDir = join(ROOT, '.portcullis', 'bench');
    removeOldRuns(runsDir, 3);
    const workDir = join(runsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
    const logDir = join(workDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    return new BenchStack(workDir, logDir);
  }

  /** The loopback tooling listener: topic setup only. */
  get brokers(): string[] {
    return this.broker.brokers;
  }

  /** How a client of the given kind connects to Kafka in this run (see KafkaListener). */
  kafkaAs(user: 'policyService' | 'adapter' | 'baseline'): KafkaConnection {
    if (this.kafkaListener === 'tooling') return { brokers: this.broker.brokers };
    const { username, password } = this.kafkaUsers[user];
    const sasl = { mechanism: KAFKA_SASL_MECHANISM, username, password };
    if (this.kafkaListener === 'tls') return { brokers: this.broker.tlsBrokers, sasl, ssl: { ca: this.tlsCa } };
    return { brokers: this.broker.saslBrokers, sasl };
  }

  /** What every adapter instance trusts: the policy service's public key of this run, by its key id. */
  get trustedPolicyKeys(): Record<string, string> {
    return { [POLICY_KEY_ID]: this.policyKey.publicKeyPem };
  }

  async start(options: { build: boolean; kafkaListener: KafkaListener; partitions: number }): Promise<void> {
    this.kafkaListener = options.kafkaListener;
    this.partitions = options.partitions;
    if (options.build) buildPolicyService();
    else if (!existsSync(POLICY_SERVICE_ENTRY)) throw new Error(`${POLICY_SERVICE_ENTRY} is missing: run without --no-build`);
    const started = Date.now();
    log('starting the Kafka broker and PostgreSQL (policy database, target server) ...');
    const [broker, policyDb, targetDb] = await Promise.all([
      startKafkaBroker({
        dataDir: join(this.workDir, 'kafka'),
        heapMb: 1024,
        tls: true,
        logFile: join(this.logDir, 'kafka.log'),
        scramUsers: Object.values(this.kafkaUsers),
        superUsers: [this.kafkaUsers.admin.username],
      }).then((server) => this.track('kafka broker', server)),
      startPostgres({
        name: 'policy',
        baseDir: this.workDir,
        database: 'portcullis',
        // --profile: the policy database's statements are profiled too (see profileCheckpoint).
        settings: this.profileDir ? { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all', 'pg_stat_statements.track_planning': 'on' } : undefined,
      }).then((server) => this.track('policy database', server)),
      startPostgres({ name: 'target', baseDir: this.workDir, database: 'postgres' }).then((server) => this.track('target database', server)),
    ]);
    this.broker = broker;
    this.tlsCa = readFileSync(broker.tlsCaFile!, 'utf8');
    this.policyDb = policyDb;
    this.targetDb = targetDb;
    await ensureTopics(createKafka({ brokers: broker.brokers, clientId: 'portcullis-bench-setup' }), portcullisTopicSpecs(this.partitions));
    await this.applyKafkaAcls();
    await warmUpKafka(broker.brokers);
    log(`servers ready in ${((Date.now() - started) / 1000).toFixed(1)} s (work dir ${this.workDir})`);
    await this.startPolicyService();
    this.db = new Pool({ connectionString: policyDb.url, max: 3, application_name: 'portcullis-bench' });
    if (this.profileDir) await this.db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    // An idle connection the server drops (its shutdown on Ctrl-C, say) must not crash the run.
    this.db.on('error', (error) => {
      if (!this.stopping) console.error(`[bench] policy database connection lost: ${error.message}`);
    });
    this.stoppers.push({ name: 'bench database pool', stop: () => this.db.end() });
  }

  /**
   * Least privilege per service as deployed (deploy/kafka/acls.ts: the policy service and the adapters'
   * shared user), plus the baseline's user on the baseline's own topics and groups. Set through the
   * tooling listener (a super user).
   */
  private async applyKafkaAcls(): Promise<void> {
    const admin = createKafka({ brokers: this.broker.brokers, clientId: 'portcullis-bench-setup' }).admin();
    await admin.connect();
    try {
      await applyPortcullisAcls(admin, {
        policyService: { principal: userPrincipal(this.kafkaUsers.policyService.username) },
        adapters: [{ principal: userPrincipal(this.kafkaUsers.adapter.username) }],
      });
      const baseline = userPrincipal(this.kafkaUsers.baseline.username);
      const allow = (resourceType: AclResourceTypes, resourceName: string, operation: AclOperationTypes): AclEntry => ({
        principal: baseline,
        host: '*',
        resourceType,
        resourceName,
        resourcePatternType: ResourcePatternTypes.PREFIXED,
        operation,
        permissionType: AclPermissionTypes.ALLOW,
      });
      await admin.createAcls({
        acl: [
          allow(AclResourceTypes.TOPIC, BASELINE_TOPIC_PREFIX, AclOperationTypes.READ),
          allow(AclResourceTypes.TOPIC, BASELINE_TOPIC_PREFIX, AclOperationTypes.WRITE),
          allow(AclResourceTypes.GROUP, BASELINE_GROUP_PREFIX, AclOperationTypes.READ),
        ],
      });
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * As deployed, the service runs as a login role in the group role `portcullis_app` (it may only read and
   * append to the audit trail); the migrations run as the owner (the server's superuser here). Returns
   * DATABASE_URL for that role.
   */
  private async createServiceLoginRole(): Promise<string> {
    const role = 'portcullis_bench_service';
    const password = randomBytes(16).toString('hex');
    const admin = new Client({ connectionString: this.policyDb.url });
    await admin.connect();
    try {
      await admin.query(createAppRoleSql());
      await admin.query(`CREATE ROLE ${escapeIdentifier(role)} LOGIN PASSWORD ${escapeLiteral(password)} IN ROLE ${escapeIdentifier(APP_ROLE)}`);
    } finally {
      await admin.end();
    }
    const url = new URL(this.policyDb.url);
    url.username = role;
    url.password = password;
    return url.toString();
  }

  /** The built policy service as its own OS process, configured like a deployment, through the environment. */
  private async startPolicyService(): Promise<void> {
    const port = await freePort();
    const databaseUrl = await this.createServiceLoginRole();
    // The signing key as a file only this user can read (SIGNING_KEY takes PEM text or a path).
    const keyFile = join(this.workDir, 'policy-signing-key.pem');
    writeFileSync(keyFile, this.policyKey.privateKeyPem, { mode: 0o600 });
    const kafka = this.kafkaAs('policyService');
    const logFile = openSync(join(this.logDir, 'policy-service.log'), 'a');
    // setpriv --pdeathsig: the kernel kills the service if this process dies without cleaning up.
    const nodeArgs = [...(this.profileDir ? ['--require', PROFILE_PRELOAD] : []), POLICY_SERVICE_ENTRY];
    const [command, args] = existsSync('/usr/bin/setpriv')
      ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', process.execPath, ...nodeArgs]]
      : [process.execPath, nodeArgs];
    const child = spawn(command, args, {
      cwd: ROOT,
      stdio: ['ignore', logFile, logFile],
      env: {
        ...process.env,
        NODE_ENV: 'production',
        PORT: String(port),
        DATABASE_URL: databaseUrl,
        DATABASE_MIGRATION_URL: this.policyDb.url,
        KAFKA_BROKERS: kafka.brokers.join(','),
        ...(kafka.sasl
          ? { KAFKA_SASL_MECHANISM: kafka.sasl.mechanism, KAFKA_SASL_USERNAME: kafka.sasl.username, KAFKA_SASL_PASSWORD: kafka.sasl.password }
          : { KAFKA_SASL_USERNAME: '' }),
        ...(kafka.ssl ? { KAFKA_SSL_CA: kafka.ssl.ca } : {}),
        SIGNING_KEY: keyFile,
        SIGNING_KEY_ID: POLICY_KEY_ID,
        JWT_SECRET: this.jwt.secret,
        JWT_ISSUER: this.jwt.issuer,
        JWT_AUDIENCE: this.jwt.audience,
        KAFKA_ENSURE_TOPICS: 'false',
        KAFKA_TOPIC_PARTITIONS: String(this.partitions),
        // Generous, so that a long global revoke is not reported `overdue` (status only; no effect on timing).
        ACK_DEADLINE_SECONDS: '3600',
        // Approvals are a rate-limited ("sensitive") route: 30 per caller per minute by default, and the
        // benchmark's one approver approves every restore. Lifted so the limit never shapes a figure.
        SENSITIVE_RATE_LIMIT: '1000000',
        KAFKAJS_NO_PARTITIONER_WARNING: '1',
        ...this.profilingEnv('policy-service'),
      },
    });
    closeSync(logFile);
    this.policyService = child;
    const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
    child.once('exit', (code, signal) => {
      if (!this.stopping) console.error(`[bench] the policy service exited (${signal ?? code}); see ${join(this.logDir, 'policy-service.log')}`);
    });
    this.stoppers.push({
      name: 'policy service',
      stop: async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.kill('SIGTERM');
        await exited;
        clearTimeout(timer);
      },
    });
    const apiUrl = `http://127.0.0.1:${port}/api/v1`;
    await waitForHealth(`${apiUrl}/health`, child, 90_000);
    this.client = new PolicyClient(apiUrl, this.jwt);
    log(`policy service ready (pid ${child.pid}, ${apiUrl})`);
  }

  /** Forks `count` adapter workers; they are stopped by `stopWorkers` or at the end of the run. */
  async startWorkers(prefix: string, count: number, instancesPerWorker: number): Promise<AdapterWorker[]> {
    // The kit's state store fsyncs through libuv's thread pool; several instances share a process here,
    // so give the process the threads each of them would have on its own (4), up to 64.
    const threads = Math.min(64, Math.max(4, 4 * instancesPerWorker));
    const workers = await Promise.all(
      Array.from({ length: count }, (_, index) => {
        const name = `${prefix}-${index + 1}`;
        return AdapterWorker.start(name, this.logDir, threads, this.profileDir ? { preload: PROFILE_PRELOAD, env: this.profilingEnv(name) } : undefined);
      }),
    );
    workers.forEach((worker) => this.workers.add(worker));
    return workers;
  }

  async stopWorkers(workers: readonly AdapterWorker[]): Promise<void> {
    await Promise.all(workers.map((worker) => worker.stop()));
    workers.forEach((worker) => this.workers.delete(worker));
  }

  /** The processes of the run's servers: the policy service, the broker, and both PostgreSQL servers with all their processes. */
  serverPids(): number[] {
    return [this.policyService.pid ?? 0, this.broker.pid() ?? 0, ...this.postgresTree('policy'), ...this.postgresTree('target')].filter(Boolean);
  }

  /** Every process of the PostgreSQL server in `<workDir>/<name>` (none if it is not running). */
  private postgresTree(name: string): number[] {
    const pid = postmasterPid(join(this.workDir, name));
    return pid ? processTree(pid) : [];
  }

  /** Measures the CPU time of every process of the run, by kind (workers: those running at `start`). */
  cpuMeter(): CpuMeter {
    return new CpuMeter([
      { kind: 'policy_service', pids: () => [this.policyService.pid!] },
      { kind: 'adapter_workers', pids: () => [...this.workers].map((worker) => worker.pid) },
      { kind: 'kafka_broker', pids: () => [this.broker.pid() ?? 0].filter(Boolean) },
      { kind: 'postgres_policy_db', pids: () => this.postgresTree('policy') },
      { kind: 'postgres_target', pids: () => this.postgresTree('target') },
      { kind: 'bench_client', pids: () => [process.pid] },
    ]);
  }

  /** Follows commands in the policy database (see CommandTracker); stopped with the run at the latest. */
  tracker(pollMs: number, timeoutMs?: number): CommandTracker {
    const tracker = new CommandTracker(this.db, pollMs, timeoutMs, () => this.trackers.delete(tracker));
    this.trackers.add(tracker);
    return tracker;
  }

  /** Stops everything this run started, in reverse order. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const tracker of [...this.trackers]) tracker.stop();
      await Promise.all([...this.workers].map((worker) => worker.stop().catch(() => worker.kill())));
      for (const { name, stop } of this.stoppers.reverse()) {
        await stop().catch((error: unknown) => console.error(`[bench] stopping the ${name} failed: ${error}`));
      }
    })();
    return this.stopping;
  }

  private track<T extends { stop(): Promise<void> }>(name: string, server: T): T {
    this.stoppers.push({ name, stop: () => server.stop() });
    return server;
  }
}

function buildPolicyService(): void {
  log('building the policy service (nest build policy-service) ...');
  const result = spawnSync(process.execPath, [require.resolve('@nestjs/cli/bin/nest.js'), 'build', 'policy-service'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (result.status !== 0) throw new Error('nest build policy-service failed');
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('the policy service exited during start');
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not become healthy within ${timeoutMs / 1000} s`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 250));
  }
}

/** Keeps the `keep` newest run directories (logs of recent runs stay for inspection). */
function removeOldRuns(runsDir: string, keep: number): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(runsDir);
  } catch {
    return;
  }
  const dirs = entries
    .map((entry) => join(runsDir, entry))
    .filter((dir) => statSync(dir).isDirectory())
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  for (const dir of dirs.slice(keep)) rmSync(dir, { recursive: true, force: true });
}
