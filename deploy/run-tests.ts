/**
 * `npm test`: starts the servers the integration specs need ONCE for the whole run — a real Kafka
 * broker (KRaft, from Maven Central jars), a PostgreSQL for the policy service, and as enforcement
 * targets two PostgreSQL servers, an OpenLDAP slapd and a Redis server — then runs every Jest spec
 * against them and stops them again. Specs can stop, kill and start the broker and the Redis target
 * through a small control endpoint (`testServers()` in test/support/test-env.ts).
 *
 *   npm test                      # everything
 *   npm test -- apps/adapter-postgres   # extra arguments go to Jest
 *
 * DATABASE_URL, when set, is used for the policy service's database instead of a private server
 * (specs create their own databases on it). Targets are always private throwaway servers, because
 * a revoke disables every login role on them.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '../libs/kafka/src';
import { applyPortcullisAcls, KafkaUsers, POLICY_SERVICE_GROUP_PREFIX, prefixedGroup, userPrincipal } from './kafka/acls';
import { warmUpKafka } from './lib/kafka-warm-up';
import { KAFKA_SASL_MECHANISM, newScramUser, startKafkaBroker, type KafkaBroker } from './lib/kafka-broker';
import { startPostgres, type PostgresServer } from './lib/postgres-server';
import { startRedis, type RedisServer } from './lib/redis-server';
import { startSlapd, type SlapdServer } from './lib/slapd-server';
import { startTestControlServer } from './lib/test-control.server';

const root = resolve(__dirname, '..');

async function main(): Promise<number> {
  const runsDir = join(root, '.portcullis', 'test-runs');
  removeOldRuns(runsDir);
  const workDir = join(runsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  mkdirSync(workDir, { recursive: true });

  const started = Date.now();
  const stoppers: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stoppers.reverse()) await stop().catch((error) => console.error(`stop failed: ${error}`));
  };
  try {
    console.log('[test] starting Kafka and PostgreSQL servers for this run ...');
    // Kafka: the services connect through the SASL/SCRAM listener, each with its own user (random
    // passwords per run); setup code and the specs' "attacker" use the loopback tooling listener.
    const kafkaUsers = {
      admin: newScramUser(KafkaUsers.admin),
      policyService: newScramUser(KafkaUsers.policyService),
      adapter: newScramUser(KafkaUsers.adapter()),
    };
    const [broker, policyDb, ldap, redis, ...targets] = await Promise.all([
      startKafkaBroker({
        dataDir: join(workDir, 'kafka'),
        heapMb: 512,
        tls: true,
        scramUsers: Object.values(kafkaUsers),
        superUsers: [kafkaUsers.admin.username],
      }).then((server) => track(server)),
      process.env.DATABASE_URL
        ? Promise.resolve(null)
        : startPostgres({ name: 'policy', baseDir: workDir, database: 'portcullis' }).then((server) => track(server)),
      startSlapd({ name: 'ldap', baseDir: workDir }).then((server) => track(server)),
      startRedis({ name: 'redis', baseDir: workDir }).then((server) => track(server)),
      startPostgres({ name: 'target-a', baseDir: workDir, database: 'postgres' }).then((server) => track(server)),
      startPostgres({ name: 'target-b', baseDir: workDir, database: 'postgres' }).then((server) => track(server)),
    ]);
    function track<T extends { stop(): Promise<void> }>(server: T): T {
      stoppers.push(() => server.stop());
      return server;
    }
    const kafkaBroker = broker as KafkaBroker;
    const redisServer = redis as RedisServer;
    const ldapServer = ldap as SlapdServer;
    const control = await startTestControlServer({
      'kafka/stop': () => kafkaBroker.stop(),
      'kafka/kill': () => kafkaBroker.kill(),
      'kafka/start': () => kafkaBroker.start(),
      'redis/kill': () => redisServer.kill(),
      'redis/start': () => redisServer.start(),
    });
    stoppers.push(() => control.close());
    await ensureTopics(createKafka({ brokers: kafkaBroker.brokers, clientId: 'portcullis-test-setup' }), portcullisTopicSpecs(3));
    // ACLs through the SASL listener as the admin super user (also proves that user works). The
    // specs' policy services use consumer groups `policy-service-test-<uuid>`; all test adapters
    // share the adapter user and the default group prefix `portcullis-adapter.`.
    const aclAdmin = createKafka({
      brokers: kafkaBroker.saslBrokers,
      clientId: 'portcullis-test-setup',
      sasl: { mechanism: KAFKA_SASL_MECHANISM, ...kafkaUsers.admin },
    }).admin();
    await aclAdmin.connect();
    try {
      await applyPortcullisAcls(aclAdmin, {
        policyService: {
          principal: userPrincipal(kafkaUsers.policyService.username),
          consumerGroups: [prefixedGroup(POLICY_SERVICE_GROUP_PREFIX), prefixedGroup('policy-service-test-')],
        },
        adapters: [{ principal: userPrincipal(kafkaUsers.adapter.username) }],
      });
    } finally {
      await aclAdmin.disconnect();
    }
    await warmUpKafka(kafkaBroker.brokers);
    console.log(`[test] servers ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const envFile = join(workDir, 'test-env.json');
    writeFileSync(
      envFile,
      JSON.stringify(
        {
          kafka: {
            brokers: kafkaBroker.brokers,
            sasl: { brokers: kafkaBroker.saslBrokers, mechanism: KAFKA_SASL_MECHANISM, ...kafkaUsers },
            tls: { brokers: kafkaBroker.tlsBrokers, caFile: kafkaBroker.tlsCaFile },
          },
          postgres: {
            policyUrl: process.env.DATABASE_URL ?? (policyDb as PostgresServer).url,
            targetUrls: (targets as PostgresServer[]).map((target) => target.url),
          },
          ldap: { url: ldapServer.url, baseDn: ldapServer.baseDn, bindDn: ldapServer.bindDn, bindPassword: ldapServer.bindPassword },
          redis: { url: redisServer.url },
          controlUrl: control.url,
          workDir,
        },
        null,
        2,
      ),
    );

    const resultsFile = join(workDir, 'jest-results.json');
    // No --forceExit: a spec that leaves a connection or a timer behind keeps Jest from exiting, which is
    // how kafkajs's reconnected group coordinators were found (patches/kafkajs+2.2.4.patch). So that such a
    // leak cannot hang CI either, Jest is stopped, saying so, if it has not exited a while after its results.
    const exitCode = await runJest(['--runInBand', '--json', `--outputFile=${resultsFile}`, ...process.argv.slice(2)], resultsFile, {
      ...process.env,
      PORTCULLIS_TEST_ENV: envFile,
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    });
    const failed = printSummary(resultsFile);
    return exitCode === STOPPED_AFTER_RESULTS ? (failed ? 1 : 0) : exitCode;
  } finally {
    await stopAll();
  }
}

/** Removes the scratch directories of earlier runs, but never one that may still be in use. */
function removeOldRuns(runsDir: string): void {
  const cutoff = Date.now() - 3 * 60 * 60 * 1000;
  let entries: string[] = [];
  try {
    entries = readdirSync(runsDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(runsDir, entry);
    if (statSync(dir).mtimeMs < cutoff) rmSync(dir, { recursive: true, force: true });
  }
}

/** runJest's result when Jest had written its results but did not exit, and was stopped. */
const STOPPED_AFTER_RESULTS = -1;
const EXIT_GRACE_MS = 30_000;

function runJest(args: string[], resultsFile: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [require.resolve('jest/bin/jest'), ...args], { cwd: root, env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    let stopped = false;
    let resultsSeenAt: number | undefined;
    const watchdog = setInterval(() => {
      if (resultsSeenAt === undefined) {
        if (existsSync(resultsFile)) resultsSeenAt = Date.now();
        return;
      }
      if (Date.now() - resultsSeenAt < EXIT_GRACE_MS) return;
      clearInterval(watchdog);
      stopped = true;
      console.error(
        `\n[test] Jest did not exit ${EXIT_GRACE_MS / 1000} s after writing its results: a spec left a connection or a ` +
          'timer open (run the suspect spec alone with --detectOpenHandles). Stopping it.',
      );
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    }, 1_000);
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      resolvePromise(stopped ? STOPPED_AFTER_RESULTS : (code ?? (signal ? 1 : 0)));
    });
  });
}

/** A plain closing line that any CI can read, whatever the test runner. Returns whether anything failed. */
function printSummary(resultsFile: string): boolean {
  try {
    const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as {
      success: boolean;
      numPassedTests: number;
      numFailedTests: number;
      numPendingTests: number;
      numTodoTests: number;
      numRuntimeErrorTestSuites: number;
    };
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    console.log(`\njest: ${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests + results.numTodoTests} skipped`);
    // Jest's own verdict: it also fails on snapshot and coverage-threshold failures.
    return failed > 0 || !results.success;
  } catch {
    console.log('\njest: no results were written (the run failed before any test finished)');
    return true;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(1);
  },
);
