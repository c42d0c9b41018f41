/**
 * `npm start`: the whole Portcullis stack on this machine, with demo data, in the foreground.
 *
 * - a real Kafka broker (KRaft, jars from Maven Central on first use), topics created with their settings;
 * - PostgreSQL for the policy service (DATABASE_URL when set, otherwise a private server);
 * - two demo target PostgreSQL servers ("stock-db" and "crm-db") with login roles, and, where this
 *   machine has `slapd` and `redis-server`, a demo LDAP directory ("staff-directory") and a demo Redis
 *   ("session-cache") — the stack says which ones it skipped and why;
 * - the policy service on PORT (default 3000) and one adapter per kind of target;
 * - demo systems and groups registered through the API, so they appear in the audit history.
 *
 * Every start is a fresh demo: the stack's data lives in .portcullis/stack and is wiped at start.
 * Ctrl-C stops everything.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sign } from 'jsonwebtoken';
import { Client } from 'pg';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '../libs/kafka/src';
import { seedDemoRegistry, type DemoTargets } from './demo/demo-registry';
import { seedDemoCache, seedDemoDirectory } from './demo/demo-targets';
import { startRedis } from './lib/redis-server';
import { startSlapd } from './lib/slapd-server';
import { warmUpKafka } from './lib/kafka-warm-up';
import { startKafkaBroker } from './lib/kafka-broker';
import { startPostgres } from './lib/postgres-server';

const root = resolve(__dirname, '..');
const stackDir = join(root, '.portcullis', 'stack');
const logsDir = join(stackDir, 'logs');
const port = Number(process.env.PORT ?? 3000);
const apiUrl = `http://127.0.0.1:${port}/api/v1`;

const DEMO_ROLES = readFileSync(join(__dirname, 'demo', 'demo-target-roles.sql'), 'utf8');

const stoppers: (() => Promise<void>)[] = [];
let stopping = false;

function log(message: string): void {
  console.log(`[stack] ${message}`);
}

async function stopAll(): Promise<void> {
  if (stopping) return;
  stopping = true;
  log('stopping ...');
  for (const stop of stoppers.reverse()) await stop().catch((error) => console.error(`[stack] stop failed: ${error}`));
}

function build(): void {
  for (const app of ['policy-service', 'adapter-postgres', 'adapter-ldap', 'adapter-redis']) {
    log(`building ${app} ...`);
    const result = spawnSync(process.execPath, [require.resolve('@nestjs/cli/bin/nest.js'), 'build', app], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (result.status !== 0) throw new Error(`build of ${app} failed`);
  }
}

function runService(name: string, entry: string, env: NodeJS.ProcessEnv): ChildProcess {
  const out = createWriteStream(join(logsDir, `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [join(root, entry)], { cwd: root, env: { ...process.env, ...env } });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      log(`${name} exited (${signal ?? code}); see ${join(logsDir, `${name}.log`)}`);
      void stopAll().then(() => process.exit(1));
    }
  });
  stoppers.push(
    () =>
      new Promise<void>((resolveStop) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolveStop();
        child.once('exit', () => resolveStop());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  );
  return child;
}

async function waitForHealth(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not become healthy within ${timeoutMs / 1000} s`);
    await new Promise((resolveWait) => setTimeout(resolveWait, 300));
  }
}

/** Starts a demo target this machine may lack; says clearly when and why it was skipped. */
async function optionalTarget<T>(what: string, start: () => Promise<T>): Promise<T | null> {
  try {
    return await start();
  } catch (error) {
    log(`skipping the ${what}: ${error instanceof Error ? error.message.split('\n')[0] : error}`);
    return null;
  }
}

/** Writes an adapter's configuration and starts the built adapter. */
function startAdapter(app: string, adapterId: string, systems: Record<string, object>, kafka: { brokers: string[] }): void {
  log(`starting ${app} (${adapterId}) for ${Object.keys(systems).join(', ')} ...`);
  const configFile = join(stackDir, `${adapterId}.json`);
  const config = { adapterId, stateDir: join(stackDir, `state-${adapterId}`), kafka: { ...kafka, clientId: adapterId }, systems };
  writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
  runService(app, `dist/apps/${app}/main.js`, { ADAPTER_CONFIG: configFile, PORT: '0' });
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  rmSync(stackDir, { recursive: true, force: true });
  mkdirSync(logsDir, { recursive: true });
  if (!process.argv.includes('--no-build')) build();

  log('starting Kafka and PostgreSQL ...');
  const [broker, policyDb, stockDb, crmDb] = await Promise.all([
    startKafkaBroker({
      dataDir: join(stackDir, 'kafka'),
      port: Number(process.env.KAFKA_PORT ?? 19092),
      controllerPort: Number(process.env.KAFKA_CONTROLLER_PORT ?? 19093),
      logFile: join(logsDir, 'kafka.log'),
    }),
    process.env.DATABASE_URL ? Promise.resolve(null) : startPostgres({ name: 'policy', baseDir: stackDir, database: 'portcullis' }),
    startPostgres({ name: 'stock-db', baseDir: stackDir, database: 'stock' }),
    startPostgres({ name: 'crm-db', baseDir: stackDir, database: 'crm' }),
  ]);
  stoppers.push(() => broker.stop());
  for (const server of [policyDb, stockDb, crmDb]) if (server) stoppers.push(() => server.stop());
  const directory = await optionalTarget('LDAP directory (staff-directory)', async () => {
    const server = await startSlapd({ name: 'staff-directory', baseDir: stackDir });
    stoppers.push(() => server.stop());
    await seedDemoDirectory(server);
    return server;
  });
  const cache = await optionalTarget('Redis (session-cache)', async () => {
    const server = await startRedis({ name: 'session-cache', baseDir: stackDir });
    stoppers.push(() => server.stop());
    await seedDemoCache(server.url);
    return server;
  });
  const targets: DemoTargets = { ldap: directory !== null, redis: cache !== null };
  await ensureTopics(createKafka({ brokers: broker.brokers, clientId: 'portcullis-stack' }), portcullisTopicSpecs(6));
  await warmUpKafka(broker.brokers);
  for (const target of [stockDb, crmDb]) {
    const client = new Client({ connectionString: target.url });
    await client.connect();
    await client.query(DEMO_ROLES);
    await client.end();
  }

  const jwt = { secret: randomBytes(32).toString('hex'), issuer: 'portcullis-local', audience: 'portcullis' };
  const databaseUrl = process.env.DATABASE_URL ?? policyDb!.url;
  writeFileSync(join(stackDir, 'stack.json'), JSON.stringify({ jwt, apiUrl, kafka: broker.brokers }, null, 2), { mode: 0o600 });

  log('starting the policy service ...');
  runService('policy-service', 'dist/apps/policy-service/main.js', {
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    KAFKA_BROKERS: broker.brokers.join(','),
    JWT_SECRET: jwt.secret,
    JWT_ISSUER: jwt.issuer,
    JWT_AUDIENCE: jwt.audience,
    ACK_DEADLINE_SECONDS: process.env.ACK_DEADLINE_SECONDS ?? '30',
  });
  await waitForHealth(`${apiUrl}/health`, 60_000);

  const adminToken = sign({ roles: ['admin'] }, jwt.secret, { subject: 'stack-setup', issuer: jwt.issuer, audience: jwt.audience, expiresIn: '5m' });
  await seedDemoRegistry(apiUrl, adminToken, targets);

  const kafka = { brokers: broker.brokers };
  startAdapter('adapter-postgres', 'pg-demo', { 'stock-db': { url: stockDb.url }, 'crm-db': { url: crmDb.url } }, kafka);
  if (directory) {
    const { url, baseDn, bindDn, bindPassword } = directory;
    startAdapter('adapter-ldap', 'ldap-demo', { 'staff-directory': { url, baseDn: `ou=people,${baseDn}`, bindDn, bindPassword } }, kafka);
  }
  if (cache) startAdapter('adapter-redis', 'redis-demo', { 'session-cache': { url: cache.url } }, kafka);

  const lead = 'npm run --silent token -- --sub alice --roles security-lead';
  const auditor = 'npm run --silent token -- --sub audrey --roles auditor';
  console.log(`
Portcullis is running.

  API          ${apiUrl}          (OpenAPI: http://127.0.0.1:${port}/api/docs)
  Kafka        ${broker.brokers.join(',')}
  Targets      stock-db         ${stockDb.url}
               crm-db           ${crmDb.url}
               staff-directory  ${directory ? `${directory.url} (${directory.bindDn})` : '(skipped: see above)'}
               session-cache    ${cache ? cache.url : '(skipped: see above)'}
  Logs         ${logsDir}

Try it (in another terminal):

  LEAD=$(${lead})
  AUDITOR=$(${auditor})
  curl -s -H "Authorization: Bearer $AUDITOR" ${apiUrl}/groups/back-office
  curl -s -X POST -H "Authorization: Bearer $LEAD" -H 'content-type: application/json' \\
       -d '{"reason":"Back-office credentials phished","incidentRef":"INC-2041"}' ${apiUrl}/groups/back-office/revoke
  curl -s -H "Authorization: Bearer $AUDITOR" ${apiUrl}/commands/<commandId>
  psql "${stockDb.url.replace(/\/\/[^@]+@/, '//clerk_anna:anna@')}" -c 'select 1'   # refused while revoked
  curl -s -X POST -H "Authorization: Bearer $LEAD" -H 'content-type: application/json' \\
       -d '{"reason":"Credentials rotated"}' ${apiUrl}/groups/back-office/restore
  curl -s -H "Authorization: Bearer $AUDITOR" "${apiUrl}/audit?groupId=back-office"

Ctrl-C stops everything.
`);
}

main().catch(async (error: unknown) => {
  console.error(`[stack] ${error instanceof Error ? error.message : error}`);
  await stopAll();
  process.exit(1);
});
