import { JsonLogger, startAdapter, type RunningAdapter } from '@portcullis/adapter-kit';
import { Topics } from '@portcullis/contracts';
import { createKafka, ReliableProducer } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, escapeIdentifier, escapeLiteral } from 'pg';
import { PostgresRoleEnforcer } from '../../apps/adapter-postgres/src/postgres-role.enforcer';
import { PostgresSystemConfigSchema } from '../../apps/adapter-postgres/src/postgres-system.config';

/**
 * End to end, with every part real: a security lead's revoke goes through the policy service, its
 * outbox and the Kafka broker to a PostgreSQL adapter, which withdraws LOGIN on two real PostgreSQL
 * servers and ends open sessions; acknowledgements come back and the command shows as enforced.
 */
describe('revoking and restoring a group of systems, end to end', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const stock = `stock-${suffix}`;
  const crm = `crm-${suffix}`;
  const backOffice = `back-office-${suffix}`;
  const callCentre = `call-centre-${suffix}`;
  const role = (name: string) => `e2e_${suffix}_${name}`;
  const password = randomBytes(12).toString('hex');
  const [stockUrl, crmUrl] = env.postgres.targetUrls;
  const adapterId = `pg-e2e-${suffix}`;
  const stateDir = join(env.workDir, `adapter-${adapterId}`);

  let service: RunningPolicyService;
  let adapter: RunningAdapter | undefined;
  let lead: string;
  let auditor: string;

  function startPostgresAdapter(): Promise<RunningAdapter> {
    return startAdapter({
      enforcer: new PostgresRoleEnforcer(),
      systemConfigSchema: PostgresSystemConfigSchema,
      logger: new JsonLogger({ level: 'error' }),
      config: {
        adapterId,
        stateDir,
        heartbeatIntervalMs: 1_000,
        retry: { initialMs: 200, maxMs: 2_000 },
        kafka: { brokers: env.kafka.brokers, clientId: adapterId },
        systems: { [stock]: { url: stockUrl }, [crm]: { url: crmUrl } },
      },
    });
  }

  async function admin<T>(url: string, run: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      return await run(client);
    } finally {
      await client.end();
    }
  }

  function connectAs(url: string, user: string): Promise<Client> {
    const target = new URL(url);
    const client = new Client({
      host: target.hostname,
      port: Number(target.port),
      database: target.pathname.slice(1),
      user,
      password,
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', () => undefined); // a terminated session must not crash the test process
    return client.connect().then(() => client);
  }

  async function canLogIn(url: string, user: string): Promise<boolean> {
    try {
      const client = await connectAs(url, user);
      await client.end();
      return true;
    } catch (error) {
      if (/not permitted to log in/.test((error as Error).message)) return false;
      throw error;
    }
  }

  async function decide(action: 'revoke' | 'restore', groupId: string, body: object, expected = 202) {
    const response = await service.http().post(`/api/v1/groups/${groupId}/${action}`).auth(lead, { type: 'bearer' })
      .send(body).expect(expected);
    return response.body.commandId as string;
  }

  async function command(commandId: string) {
    return (await service.http().get(`/api/v1/commands/${commandId}`).auth(auditor, { type: 'bearer' }).expect(200)).body;
  }

  function enforced(commandId: string) {
    return eventually(async () => {
      const body = await command(commandId);
      expect(body.status).toBe('enforced');
      return body;
    }, 30_000);
  }

  beforeAll(async () => {
    mkdirSync(stateDir, { recursive: true });
    for (const url of [stockUrl, crmUrl]) {
      await admin(url, async (client) => {
        for (const [name, attributes] of [['clerk', 'LOGIN'], ['dormant', 'NOLOGIN'], ['breakglass', 'LOGIN']]) {
          await client.query(`CREATE ROLE ${escapeIdentifier(role(name))} ${attributes} PASSWORD ${escapeLiteral(password)}`);
        }
      });
    }
    service = await startPolicyService(env);
    lead = service.token('alice', 'security-lead');
    auditor = service.token('audrey', 'auditor');
    const admin_ = service.token('ada', 'admin');
    for (const [id, name] of [[stock, 'Stock database'], [crm, 'CRM database']]) {
      await service.http().post('/api/v1/systems').auth(admin_, { type: 'bearer' })
        .send({ id, name, kind: 'postgres', exemptPrincipals: [role('breakglass')] }).expect(201);
    }
    await service.http().post('/api/v1/groups').auth(admin_, { type: 'bearer' })
      .send({ id: backOffice, name: 'Back office', systemIds: [stock, crm] }).expect(201);
    await service.http().post('/api/v1/groups').auth(admin_, { type: 'bearer' })
      .send({ id: callCentre, name: 'Call centre', systemIds: [crm] }).expect(201);
    adapter = await startPostgresAdapter();
  });

  afterAll(async () => {
    await adapter?.stop();
    await service?.stop();
    await service?.db.end();
  });

  it('revokes: logins refused, open sessions ended, the exempt principal untouched, the command enforced', async () => {
    const session = await connectAs(stockUrl, role('clerk'));
    await session.query('SELECT 1');

    const commandId = await decide('revoke', backOffice, { reason: 'Back-office credentials phished', incidentRef: 'INC-2041' });
    const done = await enforced(commandId);

    expect(await canLogIn(stockUrl, role('clerk'))).toBe(false);
    expect(await canLogIn(crmUrl, role('clerk'))).toBe(false);
    expect(await canLogIn(stockUrl, role('breakglass'))).toBe(true);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    const stockTarget = done.systems.find((system: { systemId: string }) => system.systemId === stock);
    expect(stockTarget).toMatchObject({ status: 'enforced', adapterId, desiredState: 'revoked', generation: 1 });
    expect(stockTarget.sessionsTerminated).toBeGreaterThanOrEqual(1);
    expect(stockTarget.principalsChanged).toBeGreaterThanOrEqual(1);

    const history = await service.http().get(`/api/v1/audit?commandId=${commandId}&limit=50`).auth(auditor, { type: 'bearer' }).expect(200);
    const actions = history.body.items.map((entry: { action: string; systemId: string | null }) => `${entry.action} ${entry.systemId ?? ''}`.trim());
    expect(actions).toEqual(expect.arrayContaining([
      'group.revoked',
      `acknowledgement.delivered ${stock}`,
      `acknowledgement.enforced ${stock}`,
      `acknowledgement.delivered ${crm}`,
      `acknowledgement.enforced ${crm}`,
    ]));
    expect(history.body.items.find((entry: { action: string }) => entry.action === 'group.revoked')).toMatchObject({
      actor: 'user:alice',
      reason: 'Back-office credentials phished',
      incidentRef: 'INC-2041',
    });

    const group = await service.http().get(`/api/v1/groups/${backOffice}`).auth(auditor, { type: 'bearer' }).expect(200);
    expect(group.body.state).toBe('revoked');
    expect(group.body.systems.map((system: { enforcement: { status: string } }) => system.enforcement.status)).toEqual(['enforced', 'enforced']);
  });

  it('restores one group while another revoked group keeps its systems revoked; NOLOGIN roles stay so', async () => {
    const callCentreRevoke = await decide('revoke', callCentre, { reason: 'Call-centre agents targeted too' });
    const covered = await command(callCentreRevoke);
    expect(covered.systems).toEqual([expect.objectContaining({ systemId: crm, changed: false, status: 'enforced' })]);

    const restore = await decide('restore', backOffice, { reason: 'Credentials rotated' });
    const done = await enforced(restore);
    expect(done.systems).toEqual([
      expect.objectContaining({ systemId: crm, changed: false, desiredState: 'revoked' }),
      expect.objectContaining({ systemId: stock, changed: true, desiredState: 'active', status: 'enforced' }),
    ]);
    expect(await canLogIn(stockUrl, role('clerk'))).toBe(true);
    expect(await canLogIn(stockUrl, role('dormant'))).toBe(false);
    expect(await canLogIn(crmUrl, role('clerk'))).toBe(false);

    await enforced(await decide('restore', callCentre, { reason: 'Call centre cleared' }));
    expect(await canLogIn(crmUrl, role('clerk'))).toBe(true);
    expect(await canLogIn(crmUrl, role('dormant'))).toBe(false);
  });

  it('an adapter stopped during a revoke enforces it when it starts again', async () => {
    await adapter!.stop();
    adapter = undefined;
    const commandId = await decide('revoke', backOffice, { reason: 'Second wave', incidentRef: 'INC-2042' });
    expect((await command(commandId)).status).toBe('pending');
    expect(await canLogIn(stockUrl, role('clerk'))).toBe(true);

    adapter = await startPostgresAdapter();
    await enforced(commandId);
    expect(await canLogIn(stockUrl, role('clerk'))).toBe(false);
    expect(await canLogIn(crmUrl, role('clerk'))).toBe(false);

    const adapters = await service.http().get('/api/v1/adapters').auth(auditor, { type: 'bearer' }).expect(200);
    expect(adapters.body).toEqual(expect.arrayContaining([
      expect.objectContaining({ id: adapterId, kind: 'postgres', status: 'online' }),
    ]));

    await enforced(await decide('restore', backOffice, { reason: 'Second wave contained' }));
    expect(await canLogIn(stockUrl, role('clerk'))).toBe(true);
  });

  it('re-delivered and stale events change nothing: an old revoke cannot undo the newer restore', async () => {
    const { rows: events } = await service.db.query<{ message_key: string; payload: string }>(
      `SELECT message_key, payload FROM outbox WHERE message_key = $1 ORDER BY id`,
      [stock],
    );
    const generations = events.map((event) => JSON.parse(event.payload).generation as number);
    expect(generations).toEqual([1, 2, 3, 4]);
    const ackCount = async () =>
      Number((await service.db.query('SELECT count(*) FROM acknowledgements WHERE system_id = $1', [stock])).rows[0].count);
    const acksBefore = await ackCount();

    // Publish every past event for the stock system again, oldest first (the latest one, a restore, last).
    const producer = new ReliableProducer(createKafka({ brokers: env.kafka.brokers, clientId: 'replayer' }));
    await producer.send(events.map((event) => ({ topic: Topics.systemAccess, key: event.message_key, value: event.payload })));
    await producer.disconnect();

    // A marker on the same key (same partition, so it is consumed after the replays): a new revoke.
    const marker = await decide('revoke', backOffice, { reason: 'Marker after replay' });
    await enforced(marker);
    // Exactly the marker's two acknowledgements (delivered, enforced) were added for the stock system.
    expect(await ackCount()).toBe(acksBefore + 2);
    expect(adapter!.system(stock)?.desired?.generation).toBe(5);

    await enforced(await decide('restore', backOffice, { reason: 'Marker done' }));
    expect(await canLogIn(stockUrl, role('clerk'))).toBe(true);
    expect(await canLogIn(stockUrl, role('dormant'))).toBe(false);
  });
});
