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
 * Every start is a fresh demo: the stack's data lives in .portcullis/stack and is wiped at start. Another
 * directory can be named in PORTCULLIS_STACK_DIR: it must be new, empty, or one an earlier `npm start` made
 * (it holds STACK_MARKER); anything else is refused, never wiped. `stack.json` there (mode 0600) says how to
 * reach everything: the API, the JWT settings that sign demo tokens, Kafka and its users, the demo targets.
 * Ctrl-C stops everything.
 *
 * The services reach Kafka over TLS (SASL_SSL, a throwaway CA made for the stack: deploy/lib/throwaway-tls.ts),
 * as they would beyond one machine.
 *
 * Ports: PORT (API, default 3000); Kafka: KAFKA_PORT (loopback tooling, 19092), KAFKA_CONTROLLER_PORT (19093),
 * KAFKA_SASL_PORT (19094), KAFKA_TLS_PORT (19095).
 * test/e2e/local-stack.int-spec.ts runs this exactly as the README says, on ports and a directory of its own.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sign } from 'jsonwebtoken';
import { Client } from 'pg';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '../libs/kafka/src';
import { adapterGroupId, applyPortcullisAcls, KafkaUsers, literalGroup, userPrincipal } from './kafka/acls';
import { APP_ROLE, createAppRoleSql } from '../apps/policy-service/src/database/migrations/1764400150000-AppRoleGrants';
import { generateSigningKeyPair } from '../libs/contracts/src';
import { seedDemoRegistry, type DemoAdapterKey, type DemoTargets } from './demo/demo-registry';
import { seedDemoCache, seedDemoDirectory } from './demo/demo-targets';
import { startRedis } from './lib/redis-server';
import { startSlapd } from './lib/slapd-server';
import { warmUpKafka } from './lib/kafka-warm-up';
import { KAFKA_SASL_MECHANISM, newScramUser, startKafkaBroker, type ScramUser } from './lib/kafka-broker';
import { startPostgres } from './lib/postgres-server';

const root = resolve(__dirname, '..');
const defaultStackDir = join(root, '.portcullis', 'stack');
// Relative to where `npm start` was typed (npm runs scripts from the package root).
const stackDir = process.env.PORTCULLIS_STACK_DIR ? resolve(process.env.INIT_CWD ?? process.cwd(), process.env.PORTCULLIS_STACK_DIR) : defaultStackDir;
/** The file that marks a directory as the stack's own: only such a directory is wiped at start. */
const STACK_MARKER = '.portcullis-stack';
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

/**
 * Empties the stack directory for a fresh demo. The default one is always the stack's; a directory named
 * in PORTCULLIS_STACK_DIR is emptied only if an earlier start marked it (or it is empty): a mistyped value
 * must never wipe a home directory or a repository.
 */
function prepareStackDir(): void {
  if (lstatSync(stackDir, { throwIfNoEntry: false })?.isSymbolicLink()) {
    // Never empty what a link points at: the default link goes (as before), a named one is refused.
    if (stackDir !== defaultStackDir) throw new Error(`PORTCULLIS_STACK_DIR=${stackDir} is a symbolic link: name the directory itself`);
    rmSync(stackDir);
  }
  if (existsSync(stackDir)) {
    const entries = readdirSync(stackDir);
    if (stackDir !== defaultStackDir && entries.length > 0 && !entries.includes(STACK_MARKER)) {
      throw new Error(
        `PORTCULLIS_STACK_DIR=${stackDir} is not empty and was not made by npm start (no ${STACK_MARKER} in it): ` +
          'refusing to wipe it. Name a new or empty directory.',
      );
    }
    for (const entry of entries) rmSync(join(stackDir, entry), { recursive: true, force: true });
  }
  mkdirSync(stackDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stackDir, STACK_MARKER), 'made by npm start (deploy/local-stack.ts): emptied at its next start\n');
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

/** The demo adapters; each has its own Kafka user and consumer group. */
const DEMO_ADAPTERS = ['pg-demo', 'ldap-demo', 'redis-demo'] as const;

interface AdapterKafka {
  brokers: string[];
  sasl: { mechanism: typeof KAFKA_SASL_MECHANISM; username: string; password: string };
  /** The CA that signed the broker's TLS certificate (file path). */
  ssl: { ca: string };
}

/**
 * The stack's signing keys, as PEM files in the stack directory (mode 0600): the policy service's (it signs
 * every decision; adapters trust its public half) and one per adapter (it signs their reports; the policy
 * service trusts the public half once an admin registers it).
 */
class StackKeys {
  readonly policyKeyId = 'policy-local-1';
  readonly policyPrivateKeyFile = join(stackDir, 'keys', 'policy-service.key.pem');
  readonly policyPublicKeyFile = join(stackDir, 'keys', 'policy-service.pub.pem');
  private readonly adapterPublicKeys = new Map<string, string>();

  constructor() {
    mkdirSync(join(stackDir, 'keys'), { recursive: true, mode: 0o700 });
    const policy = generateSigningKeyPair();
    writeFileSync(this.policyPrivateKeyFile, policy.privateKeyPem, { mode: 0o600 });
    writeFileSync(this.policyPublicKeyFile, policy.publicKeyPem);
    for (const adapterId of DEMO_ADAPTERS) {
      const pair = generateSigningKeyPair();
      writeFileSync(this.adapterPrivateKeyFile(adapterId), pair.privateKeyPem, { mode: 0o600 });
      this.adapterPublicKeys.set(adapterId, pair.publicKeyPem);
    }
  }

  adapterPrivateKeyFile(adapterId: string): string {
    return join(stackDir, 'keys', `${adapterId}.key.pem`);
  }

  adapterKeys(): DemoAdapterKey[] {
    return [...this.adapterPublicKeys].map(([adapterId, publicKeyPem]) => ({ adapterId, keyId: `${adapterId}-1`, publicKeyPem }));
  }
}

/** Creates the policy service's login role (member of `portcullis_app`) and returns its URL. */
async function createServiceLoginRole(ownerUrl: string): Promise<string> {
  const password = randomBytes(16).toString('hex');
  const client = new Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    await client.query(createAppRoleSql());
    await client.query(`CREATE ROLE portcullis_service LOGIN PASSWORD '${password}' IN ROLE ${APP_ROLE}`);
  } finally {
    await client.end();
  }
  const url = new URL(ownerUrl);
  url.username = 'portcullis_service';
  url.password = password;
  return url.toString();
}

/** Writes an adapter's configuration and starts the built adapter. */
function startAdapter(app: string, adapterId: string, systems: Record<string, object>, kafka: AdapterKafka, keys: StackKeys): void {
  log(`starting ${app} (${adapterId}) for ${Object.keys(systems).join(', ')} ...`);
  const configFile = join(stackDir, `${adapterId}.json`);
  const config = {
    adapterId,
    stateDir: join(stackDir, `state-${adapterId}`),
    kafka: { ...kafka, clientId: adapterId },
    signingKey: { keyId: `${adapterId}-1`, privateKey: keys.adapterPrivateKeyFile(adapterId) },
    trustedKeys: { [keys.policyKeyId]: keys.policyPublicKeyFile },
    systems,
  };
  writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
  runService(app, `dist/apps/${app}/main.js`, { ADAPTER_CONFIG: configFile, PORT: '0' });
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  prepareStackDir();
  mkdirSync(logsDir, { recursive: true });
  if (!process.argv.includes('--no-build')) build();

  log('starting Kafka and PostgreSQL ...');
  // Kafka users with random passwords for this run: a super user for administration, the policy
  // service, and one per demo adapter. The services connect through the SASL/SCRAM listener;
  // KAFKA_PORT is the loopback tooling listener (no authentication, super user: setup only).
  const kafkaUsers = {
    admin: newScramUser(KafkaUsers.admin),
    policyService: newScramUser(KafkaUsers.policyService),
    adapters: Object.fromEntries(DEMO_ADAPTERS.map((id) => [id, newScramUser(KafkaUsers.adapter(id))])) as Record<
      (typeof DEMO_ADAPTERS)[number],
      ScramUser
    >,
  };
  const [broker, policyDb, stockDb, crmDb] = await Promise.all([
    startKafkaBroker({
      dataDir: join(stackDir, 'kafka'),
      port: Number(process.env.KAFKA_PORT ?? 19092),
      saslPort: Number(process.env.KAFKA_SASL_PORT ?? 19094),
      controllerPort: Number(process.env.KAFKA_CONTROLLER_PORT ?? 19093),
      tls: true,
      tlsPort: Number(process.env.KAFKA_TLS_PORT ?? 19095),
      logFile: join(logsDir, 'kafka.log'),
      scramUsers: [kafkaUsers.admin, kafkaUsers.policyService, ...Object.values(kafkaUsers.adapters)],
      superUsers: [kafkaUsers.admin.username],
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
  // Least privilege per service (deploy/kafka/acls.ts), set by the admin user over SASL; each demo
  // adapter may use only its own consumer group.
  const aclAdmin = createKafka({
    brokers: broker.saslBrokers,
    clientId: 'portcullis-stack',
    sasl: { mechanism: KAFKA_SASL_MECHANISM, ...kafkaUsers.admin },
  }).admin();
  await aclAdmin.connect();
  try {
    await applyPortcullisAcls(aclAdmin, {
      policyService: { principal: userPrincipal(kafkaUsers.policyService.username) },
      adapters: DEMO_ADAPTERS.map((id) => ({
        principal: userPrincipal(kafkaUsers.adapters[id].username),
        consumerGroups: [literalGroup(adapterGroupId(id))],
      })),
    });
  } finally {
    await aclAdmin.disconnect();
  }
  await warmUpKafka(broker.brokers);
  for (const target of [stockDb, crmDb]) {
    const client = new Client({ connectionString: target.url });
    await client.connect();
    await client.query(DEMO_ROLES);
    await client.end();
  }

  const jwt = { secret: randomBytes(32).toString('hex'), issuer: 'portcullis-local', audience: 'portcullis' };
  // As in production: migrations run as the owner, the service as a login role in `portcullis_app`, which
  // may only read and append the audit trail. (A DATABASE_URL given from outside is used as it is.)
  const databaseMigrationUrl = process.env.DATABASE_URL ?? policyDb!.url;
  const databaseUrl = process.env.DATABASE_URL ?? (await createServiceLoginRole(policyDb!.url));
  writeFileSync(
    join(stackDir, 'stack.json'),
    JSON.stringify(
      {
        jwt,
        apiUrl,
        kafka: broker.brokers,
        kafkaSasl: { brokers: broker.saslBrokers, mechanism: KAFKA_SASL_MECHANISM, users: kafkaUsers },
        kafkaTls: { brokers: broker.tlsBrokers, caFile: broker.tlsCaFile },
        targets: {
          'stock-db': stockDb.url,
          'crm-db': crmDb.url,
          'staff-directory': directory ? { url: directory.url, baseDn: directory.baseDn } : null,
          'session-cache': cache ? cache.url : null,
        },
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );

  const keys = new StackKeys();
  log('starting the policy service ...');
  runService('policy-service', 'dist/apps/policy-service/main.js', {
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    DATABASE_MIGRATION_URL: databaseMigrationUrl,
    KAFKA_BROKERS: broker.tlsBrokers.join(','),
    KAFKA_SSL_CA: broker.tlsCaFile,
    KAFKA_SASL_MECHANISM: KAFKA_SASL_MECHANISM,
    KAFKA_SASL_USERNAME: kafkaUsers.policyService.username,
    KAFKA_SASL_PASSWORD: kafkaUsers.policyService.password,
    // The stack created the topics; the policy service has no CREATE permission.
    KAFKA_ENSURE_TOPICS: 'false',
    JWT_SECRET: jwt.secret,
    SIGNING_KEY: keys.policyPrivateKeyFile,
    SIGNING_KEY_ID: keys.policyKeyId,
    JWT_ISSUER: jwt.issuer,
    JWT_AUDIENCE: jwt.audience,
    ACK_DEADLINE_SECONDS: process.env.ACK_DEADLINE_SECONDS ?? '30',
  });
  await waitForHealth(`${apiUrl}/health`, 60_000);

  const adminToken = sign({ roles: ['admin'] }, jwt.secret, { subject: 'stack-setup', issuer: jwt.issuer, audience: jwt.audience, expiresIn: '5m' });
  await seedDemoRegistry(apiUrl, adminToken, targets, keys.adapterKeys());

  const kafka = (adapterId: (typeof DEMO_ADAPTERS)[number]): AdapterKafka => ({
    brokers: broker.tlsBrokers,
    sasl: { mechanism: KAFKA_SASL_MECHANISM, ...kafkaUsers.adapters[adapterId] },
    ssl: { ca: broker.tlsCaFile! },
  });
  startAdapter('adapter-postgres', 'pg-demo', { 'stock-db': { url: stockDb.url }, 'crm-db': { url: crmDb.url } }, kafka('pg-demo'), keys);
  if (directory) {
    const { url, baseDn, bindDn, bindPassword } = directory;
    startAdapter(
      'adapter-ldap',
      'ldap-demo',
      { 'staff-directory': { url, baseDn: `ou=people,${baseDn}`, bindDn, bindPassword } },
      kafka('ldap-demo'),
      keys,
    );
  }
  if (cache) startAdapter('adapter-redis', 'redis-demo', { 'session-cache': { url: cache.url } }, kafka('redis-demo'), keys);

  const lead = 'npm run --silent token -- --sub alice --roles security-lead';
  const auditor = 'npm run --silent token -- --sub audrey --roles auditor';
  const secondLead = 'npm run --silent token -- --sub bob --roles security-lead';
  console.log(`
Portcullis is running.

  API          ${apiUrl}          (OpenAPI: http://127.0.0.1:${port}/api/docs)
  Kafka        ${broker.tlsBrokers.join(',')}  (TLS, CA ${broker.tlsCaFile}, then SASL/SCRAM-SHA-512: the services' listener)
               ${broker.saslBrokers.join(',')}  (the same users without TLS, loopback only; users and passwords in ${join(stackDir, 'stack.json')})
               ${broker.brokers.join(',')}  (loopback tooling listener: no authentication, not for services)
  Targets      stock-db         ${stockDb.url}
               crm-db           ${crmDb.url}
               staff-directory  ${directory ? `${directory.url} (${directory.bindDn})` : '(skipped: see above)'}
               session-cache    ${cache ? cache.url : '(skipped: see above)'}
  Logs         ${logsDir}

Try it (in another terminal):

  LEAD=$(${lead})
  AUDITOR=$(${auditor})
  LEAD2=$(${secondLead})
  curl -s -H "Authorization: Bearer $AUDITOR" ${apiUrl}/groups/back-office
  curl -s -X POST -H "Authorization: Bearer $LEAD" -H 'content-type: application/json' \\
       -d '{"reason":"Back-office credentials phished","incidentRef":"INC-2041"}' ${apiUrl}/groups/back-office/revoke
  curl -s -H "Authorization: Bearer $AUDITOR" ${apiUrl}/commands/<commandId>
  psql "${stockDb.url.replace(/\/\/[^@]+@/, '//clerk_anna:anna@')}" -c 'select 1'   # refused while revoked
  curl -s -X POST -H "Authorization: Bearer $LEAD" -H 'content-type: application/json' \\
       -d '{"reason":"Credentials rotated"}' ${apiUrl}/groups/back-office/restore   # a request: four eyes
  curl -s -X POST -H "Authorization: Bearer $LEAD2" -H 'content-type: application/json' \\
       -d '{"comment":"checked the rotation"}' ${apiUrl}/commands/<restore commandId>/approve
  curl -s -H "Authorization: Bearer $AUDITOR" ${apiUrl}/audit/verify
  curl -s -H "Authorization: Bearer $AUDITOR" "${apiUrl}/audit?groupId=back-office"

Ctrl-C stops everything.
`);
}

main().catch(async (error: unknown) => {
  console.error(`[stack] ${error instanceof Error ? error.message : error}`);
  await stopAll();
  process.exit(1);
});
