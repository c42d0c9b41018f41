/**
 * Test/local-stack harness for a real single-node KRaft Apache Kafka broker, run on the JDK from
 * the jars on Maven Central by deploy/kafka/kafka-broker.sh (no Docker). See deploy/README.md.
 *
 *   const broker = await startKafkaBroker({
 *     dataDir: '/tmp/x/kafka',
 *     scramUsers: [newScramUser('portcullis-admin'), newScramUser('portcullis-policy-service')],
 *     superUsers: ['portcullis-admin'],
 *   });
 *   new Kafka({ brokers: broker.brokers });   // loopback tooling listener: PLAINTEXT, no auth, super user
 *   new Kafka({ brokers: broker.saslBrokers, sasl: { mechanism: 'scram-sha-512', username, password } });
 *   // with `tls: true`: the same users over TLS, trusting the broker's throwaway CA only
 *   new Kafka({ brokers: broker.tlsBrokers, ssl: { ca: [readFileSync(broker.tlsCaFile!)] }, sasl: { ... } });
 *   await broker.stop();   // SIGTERM (controlled shutdown), SIGKILL after 20 s
 *   await broker.start();  // same data dir and ports: topics, offsets, records, users and ACLs are kept
 *
 * Two client listeners, both bound to 127.0.0.1:
 * - `brokers`: PLAINTEXT, unauthenticated (principal User:ANONYMOUS, a super user). Loopback tooling
 *   only — topic setup, ACL setup, and the tests' "attacker with network access" — never production.
 * - `saslBrokers`: SASL_PLAINTEXT with SCRAM-SHA-512 (no TLS: loopback only). The services connect
 *   here with their own users; the StandardAuthorizer enforces ACLs (deploy/kafka/acls.ts).
 * - `tlsBrokers` (with `tls: true`): SASL_SSL, the same users and ACLs over TLS, with a certificate for
 *   127.0.0.1 from a throwaway CA (throwaway-tls.ts, kept in `<dataDir>/tls`) whose PEM is `tlsCaFile`.
 *
 * The JVM never outlives this Node process: one set of 'exit'/SIGINT/SIGTERM/SIGHUP handlers
 * (child-process-guard.ts, installed only while servers run) SIGKILLs it at exit; on a signal the
 * application also handles, it gets SIGTERM first (graceful), otherwise SIGKILL and Node dies of the
 * signal as usual. If this process dies without running handlers, the kernel SIGKILLs the JVM (prctl
 * PDEATHSIG, via `kafka-broker.sh run --die-with-parent`).
 * The child process is unref'ed: a running broker alone does not keep Node alive.
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { trackChild } from './child-process-guard';
import { freePort } from './free-port';
import { serverTlsFiles, throwawayServerTls } from './throwaway-tls';

/** A SCRAM-SHA-512 user of the broker. */
export interface ScramUser {
  /** Letters, digits, `.`, `_`, `-`. The Kafka principal is `User:<username>`. */
  username: string;
  /** Letters, digits, `_`, `-` (e.g. base64url), so it needs no escaping anywhere. */
  password: string;
}

/** The kafkajs `sasl.mechanism` of the broker's SASL listener. */
export const KAFKA_SASL_MECHANISM = 'scram-sha-512' as const;

/** A user with a random 192-bit password (base64url), for one run of the tests or the local stack. */
export function newScramUser(username: string): ScramUser {
  return { username, password: randomBytes(24).toString('base64url') };
}

const USERNAME = /^[A-Za-z0-9._-]+$/;
const PASSWORD = /^[A-Za-z0-9_-]+$/;

export interface KafkaBrokerOptions {
  /** Broker state (server.properties, data/, cluster-id); created if missing, reused if formatted. */
  dataDir: string;
  /** Unauthenticated PLAINTEXT listener on 127.0.0.1 (loopback tooling only); a free port when omitted. */
  port?: number;
  /** SASL_PLAINTEXT (SCRAM-SHA-512) listener on 127.0.0.1; a free port when omitted. */
  saslPort?: number;
  /**
   * SCRAM-SHA-512 users, created when the data dir is formatted (the first start on it): a restart on
   * a formatted dir keeps the users it was formatted with and ignores this list.
   */
  scramUsers?: ScramUser[];
  /**
   * SCRAM user names that are super users (they bypass ACLs), e.g. the admin. User:ANONYMOUS — the
   * node's own controller and inter-broker traffic and the loopback tooling listener — always is one.
   */
  superUsers?: string[];
  /** Adds a SASL_SSL listener (TLS, then SCRAM-SHA-512) on 127.0.0.1; default false. */
  tls?: boolean;
  /** Its port; a free port when omitted. */
  tlsPort?: number;
  /** CONTROLLER listener on 127.0.0.1; a free port when omitted. Never give this port to clients. */
  controllerPort?: number;
  /** Maximum heap (-Xmx) in MiB; default 512. */
  heapMb?: number;
  /** Broker stdout/stderr (appended); default `<dataDir>/broker.log`. */
  logFile?: string;
  /** From spawn to a successful kafkajs describeCluster(); default 90 000 ms. */
  startTimeoutMs?: number;
}

export interface KafkaBroker {
  /**
   * kafkajs `brokers` list of the unauthenticated loopback tooling listener, e.g. `['127.0.0.1:40123']`.
   * Anyone who can connect to it is a super user: for setup code and tests, never for the services.
   */
  readonly brokers: string[];
  readonly port: number;
  /** kafkajs `brokers` list of the SASL/SCRAM-SHA-512 listener (use with `sasl: { mechanism: KAFKA_SASL_MECHANISM, ... }`). */
  readonly saslBrokers: string[];
  readonly saslPort: number;
  /** kafkajs `brokers` list of the SASL_SSL listener (`tls: true`), else empty. */
  readonly tlsBrokers: string[];
  /** PEM file of the CA that signed the TLS listener's certificate (`tls: true`). */
  readonly tlsCaFile: string | undefined;
  readonly controllerPort: number;
  readonly dataDir: string;
  readonly logFile: string;
  /** PID of the broker JVM while it runs (the script execs java), else undefined. */
  pid(): number | undefined;
  /** SIGTERM (controlled shutdown) and wait; SIGKILL after 20 s. No-op when not running. */
  stop(): Promise<void>;
  /** SIGKILL and wait (an unclean stop: the next start recovers the logs). */
  kill(): Promise<void>;
  /** Start again on the same data dir and ports and wait until ready. No-op when running. */
  start(): Promise<void>;
}

const READY_LINE = 'Kafka Server started';
const DEFAULT_HEAP_MB = 512;
const DEFAULT_START_TIMEOUT_MS = 90_000;
const STOP_GRACE_MS = 20_000;
const FETCH_TIMEOUT_MS = 10 * 60_000;

// ---------------------------------------------------------------------------------------------
// Locating the shell script (works from deploy/lib under tsx/ts-jest and from a compiled dist/).

let scriptPath: string | undefined;

function brokerScript(): string {
  if (scriptPath) return scriptPath;
  const rel = path.join('deploy', 'kafka', 'kafka-broker.sh');
  const candidates: string[] = [];
  if (process.env.PORTCULLIS_KAFKA_BROKER_SCRIPT) candidates.push(process.env.PORTCULLIS_KAFKA_BROKER_SCRIPT);
  candidates.push(path.resolve(__dirname, '..', 'kafka', 'kafka-broker.sh'));
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    candidates.push(path.join(dir, rel));
    if (path.dirname(dir) === dir) break;
  }
  candidates.push(path.resolve(process.cwd(), rel));
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new Error(`kafka-broker.sh not found (looked in: ${candidates.join(', ')})`);
  scriptPath = found;
  return found;
}

// ---------------------------------------------------------------------------------------------
// Fetching the jars once per process (a no-op taking milliseconds when deploy/kafka/lib is filled).

let fetched: Promise<void> | undefined;

export function fetchKafkaJars(): Promise<void> {
  if (!fetched) {
    fetched = runFetch().catch((err: unknown) => {
      fetched = undefined;
      throw err;
    });
  }
  return fetched;
}

function runFetch(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [brokerScript(), 'fetch'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-8000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), FETCH_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`kafka-broker.sh fetch could not start: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`kafka-broker.sh fetch failed (code ${code}, signal ${signal}):\n${stderr}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Signalling a broker: its whole process group. child-process-guard.ts kills the brokers through
// this when this process goes away.

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    // The script runs in its own process group (detached): this also reaches mvn or the storage
    // formatter while they run; once the script has exec'ed java, the group is just the JVM.
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readFrom(file: string, offset: number): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    const n = fs.readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The last `lines` lines of a log file (for error messages). */
export function logTail(file: string, lines = 40): string {
  let size = 0;
  try {
    size = fs.statSync(file).size;
  } catch {
    return '(no log file)';
  }
  const text = readFrom(file, Math.max(0, size - 64 * 1024));
  return text.split('\n').slice(-lines).join('\n');
}

class BindError extends Error {}

class LocalKafkaBroker implements KafkaBroker {
  readonly brokers: string[];
  readonly saslBrokers: string[];
  readonly tlsBrokers: string[];
  readonly tlsCaFile: string | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private lastExit = '';

  constructor(
    readonly port: number,
    readonly saslPort: number,
    readonly controllerPort: number,
    readonly dataDir: string,
    readonly logFile: string,
    private readonly heapMb: number,
    private readonly startTimeoutMs: number,
    private readonly scramUsers: readonly ScramUser[],
    private readonly superUsers: readonly string[],
    private readonly tlsPort: number | undefined,
  ) {
    this.brokers = [`127.0.0.1:${port}`];
    this.saslBrokers = [`127.0.0.1:${saslPort}`];
    this.tlsBrokers = tlsPort === undefined ? [] : [`127.0.0.1:${tlsPort}`];
    // Made (or reused) by start(), which every caller awaits before it reads this.
    this.tlsCaFile = tlsPort === undefined ? undefined : serverTlsFiles(path.join(dataDir, 'tls')).caFile;
  }

  pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const deadline = Date.now() + this.startTimeoutMs;
    await fetchKafkaJars();
    fs.mkdirSync(this.dataDir, { recursive: true });
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });

    // The SCRAM credentials reach the formatter through a file only this user can read (never argv);
    // the script reads it only when it formats, and it is deleted as soon as the broker is ready.
    const scramFile = path.join(this.dataDir, '.scram-users');
    const scramArgs: string[] = [];
    if (this.scramUsers.length > 0) {
      fs.writeFileSync(
        scramFile,
        this.scramUsers.map((user) => `SCRAM-SHA-512=[name=${user.username},password=${user.password}]\n`).join(''),
        { mode: 0o600 },
      );
      scramArgs.push('--scram-file', scramFile);
    }
    const tlsArgs: string[] = [];
    if (this.tlsPort !== undefined) {
      const tls = throwawayServerTls(path.join(this.dataDir, 'tls'));
      tlsArgs.push('--tls-port', String(this.tlsPort), '--tls-keystore', tls.keystoreFile, '--tls-keystore-password-file', tls.keystorePasswordFile);
    }
    const fd = fs.openSync(this.logFile, 'a');
    let offset: number;
    let child: ChildProcess;
    try {
      fs.writeSync(
        fd,
        `\n==== ${new Date().toISOString()} kafka-broker.ts: starting 127.0.0.1:${this.port} (SASL 127.0.0.1:${this.saslPort}) ====\n`,
      );
      offset = fs.fstatSync(fd).size;
      child = spawn(
        'bash',
        [
          brokerScript(),
          'run',
          '--data-dir', this.dataDir,
          '--port', String(this.port),
          '--sasl-port', String(this.saslPort),
          '--controller-port', String(this.controllerPort),
          '--heap-mb', String(this.heapMb),
          ...scramArgs,
          ...tlsArgs,
          ...this.superUsers.flatMap((name) => ['--super-user', name]),
          '--die-with-parent',
        ],
        // Output goes straight to the file: no pipe the broker could block on, nothing lost.
        { detached: true, stdio: ['ignore', fd, fd] },
      );
    } catch (err) {
      fs.rmSync(scramFile, { force: true });
      throw err;
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    child.unref();
    trackChild(child, signalGroup);
    this.exited = new Promise<void>((resolve) => {
      const done = (desc: string) => {
        if (this.child === child) this.child = undefined;
        this.lastExit = desc;
        resolve();
      };
      child.once('exit', (code, signal) => done(`exit code ${code}, signal ${signal}`));
      child.once('error', (err) => {
        if (child.pid === undefined) done(`spawn error: ${err.message}`);
      });
    });

    try {
      await this.waitReady(child, offset, deadline);
    } catch (err) {
      if (this.child === child) {
        signalGroup(child, 'SIGKILL');
        await this.waitExit(child);
      }
      throw err;
    } finally {
      fs.rmSync(scramFile, { force: true });
    }
  }

  private failure(message: string, offset: number): Error {
    const log = readFrom(this.logFile, offset);
    const tail = log.split('\n').slice(-40).join('\n');
    const text = `Kafka broker 127.0.0.1:${this.port} (data ${this.dataDir}): ${message}\n--- ${this.logFile} (tail) ---\n${tail}`;
    return /BindException|Address already in use/.test(log) ? new BindError(text) : new Error(text);
  }

  private async waitReady(child: ChildProcess, offset: number, deadline: number): Promise<void> {
    // 1. The readiness line of KafkaRaftServer.
    for (;;) {
      if (this.child !== child) throw this.failure(`exited before it was ready (${this.lastExit})`, offset);
      if (readFrom(this.logFile, offset).includes(READY_LINE)) break;
      if (Date.now() > deadline) throw this.failure(`no "${READY_LINE}" within ${this.startTimeoutMs} ms`, offset);
      await sleep(100);
    }
    // 2. A bare port probe is not enough: wait until a client gets cluster metadata.
    const kafka = new Kafka({
      clientId: 'kafka-broker-harness',
      brokers: this.brokers,
      logLevel: logLevel.NOTHING,
      connectionTimeout: 2000,
      requestTimeout: 5000,
      retry: { retries: 0 },
    });
    let lastError = '';
    for (;;) {
      if (this.child !== child) throw this.failure(`exited before it was ready (${this.lastExit})`, offset);
      const admin = kafka.admin({ retry: { retries: 0 } });
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        if (cluster.brokers.length > 0 && cluster.controller !== null) {
          // After a restart the group coordinator loads __consumer_offsets asynchronously, and
          // kafkajs' admin.fetchOffsets() does not retry COORDINATOR_LOAD_IN_PROGRESS: wait for it
          // (offsets.topic.num.partitions=1, so one probe group covers every group). Never creates
          // __consumer_offsets on a fresh broker.
          if ((await admin.listTopics()).includes('__consumer_offsets')) {
            await admin.fetchOffsets({ groupId: 'portcullis-harness-readiness-probe', topics: [] });
          }
          return;
        }
        lastError = `describeCluster: ${JSON.stringify(cluster)}`;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
      if (Date.now() > deadline) {
        throw this.failure(`not answering describeCluster within ${this.startTimeoutMs} ms (last error: ${lastError})`, offset);
      }
      await sleep(250);
    }
  }

  /** The child is unref'ed; hold a reference while we wait for it so Node does not exit meanwhile. */
  private async waitExit(child: ChildProcess): Promise<void> {
    child.ref();
    try {
      await this.exited;
    } finally {
      child.unref();
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    signalGroup(child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.waitExit(child).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      }),
    ]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      signalGroup(child, 'SIGKILL');
      await this.waitExit(child);
    }
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    signalGroup(child, 'SIGKILL');
    await this.waitExit(child);
  }
}

/**
 * Start a broker (fetching the jars first if needed) and resolve once kafkajs can talk to it.
 * With auto-picked ports, a port taken by someone else in the meantime is retried with new ports.
 */
export async function startKafkaBroker(opts: KafkaBrokerOptions): Promise<KafkaBroker> {
  const dataDir = path.resolve(opts.dataDir);
  const logFile = path.resolve(opts.logFile ?? path.join(dataDir, 'broker.log'));
  const heapMb = opts.heapMb ?? DEFAULT_HEAP_MB;
  const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const scramUsers = opts.scramUsers ?? [];
  const superUsers = opts.superUsers ?? [];
  for (const user of scramUsers) {
    if (!USERNAME.test(user.username)) throw new Error(`SCRAM user name "${user.username}" must match ${USERNAME}`);
    if (!PASSWORD.test(user.password)) throw new Error(`the password of SCRAM user "${user.username}" must match ${PASSWORD}`);
  }
  for (const name of superUsers) {
    if (!USERNAME.test(name)) throw new Error(`super user name "${name}" must match ${USERNAME}`);
  }
  const autoPorts = opts.port === undefined || opts.controllerPort === undefined || opts.saslPort === undefined || (opts.tls === true && opts.tlsPort === undefined);
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const saslPort = opts.saslPort ?? (await freePort());
    const controllerPort = opts.controllerPort ?? (await freePort());
    const tlsPort = opts.tls ? (opts.tlsPort ?? (await freePort())) : undefined;
    const broker = new LocalKafkaBroker(port, saslPort, controllerPort, dataDir, logFile, heapMb, startTimeoutMs, scramUsers, superUsers, tlsPort);
    try {
      await broker.start();
      return broker;
    } catch (err) {
      if (!(err instanceof BindError) || !autoPorts || attempt >= 3) throw err;
    }
  }
}
