import type { RunningAdapter } from '@portcullis/adapter-kit';
import { Topics } from '@portcullis/contracts';
import { createKafka, ReliableProducer } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { postgresAdapterConfig, startPostgresAdapter } from '@test/support/postgres-adapter';
import { PostgresTarget } from '@test/support/postgres-target';
import { readTestEnv } from '@test/support/test-env';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

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
  const stockDb = new PostgresTarget(env.postgres.targetUrls[0], `e2e_${suffix}_`);
  const crmDb = new PostgresTarget(env.postgres.targetUrls[1], `e2e_${suffix}_`);
  const adapterId = `pg-e2e-${suffix}`;
  const adapterConfig = postgresAdapterConfig(env, adapterId, join(env.workDir, `adapter-${adapterId}`), {
    [stock]: stockDb.url,
    [crm]: crmDb.url,
  });

  let service: RunningPolicyService;
  let api: PolicyApi;
  let adapter: RunningAdapter | undefined;

  beforeAll(async () => {
    for (const target of [stockDb, crmDb]) await target.createRoles({ clerk: 'LOGIN', dormant: 'NOLOGIN', breakglass: 'LOGIN' });
    service = await startPolicyService(env);
    api = new PolicyApi(service);
    await api.registerSystem(stock, adapterId, [stockDb.role('breakglass')]);
    await api.registerSystem(crm, adapterId, [crmDb.role('breakglass')]);
    await api.createGroup(backOffice, [stock, crm]);
    await api.createGroup(callCentre, [crm]);
    adapter = await startPostgresAdapter(adapterConfig);
  });

  afterAll(async () => {
    await adapter?.stop();
    await service?.stop();
    await service?.db.end();
  });

  it('revokes: logins refused, open sessions ended, the exempt principal untouched, the command enforced', async () => {
    const session = await stockDb.connectAs('clerk');
    await session.query('SELECT 1');

    const commandId = await api.decide('revoke', backOffice, { reason: 'Back-office credentials phished', incidentRef: 'INC-2041' });
    const done = await api.until(commandId);

    expect(await stockDb.canLogIn('clerk')).toBe(false);
    expect(await crmDb.canLogIn('clerk')).toBe(false);
    expect(await stockDb.canLogIn('breakglass')).toBe(true);
    await expect(session.query('SELECT 1')).rejects.toThrow();
    const stockTarget = done.systems.find((system) => system.systemId === stock);
    expect(stockTarget).toMatchObject({ status: 'enforced', adapterId, desiredState: 'revoked', generation: 1 });
    expect(stockTarget?.sessionsTerminated).toBeGreaterThanOrEqual(1);
    expect(stockTarget?.principalsChanged).toBeGreaterThanOrEqual(1);

    const history = await api.get<{ items: { action: string; systemId: string | null }[] }>(`/audit?commandId=${commandId}&limit=50`);
    expect(history.items.map((entry) => `${entry.action} ${entry.systemId ?? ''}`.trim())).toEqual(
      expect.arrayContaining([
        'group.revoked',
        // A quick enforcement is acknowledged once, as `enforced` (`delivered` only when it takes a while).
        `acknowledgement.enforced ${stock}`,
        `acknowledgement.enforced ${crm}`,
      ]),
    );
    expect(history.items.find((entry) => entry.action === 'group.revoked')).toMatchObject({
      actor: 'user:alice',
      reason: 'Back-office credentials phished',
      incidentRef: 'INC-2041',
    });

    const group = await api.get<{ state: string; systems: { enforcement: { status: string } }[] }>(`/groups/${backOffice}`);
    expect(group.state).toBe('revoked');
    expect(group.systems.map((system) => system.enforcement.status)).toEqual(['enforced', 'enforced']);
  });

  it('restores one group while another revoked group keeps its systems revoked; NOLOGIN roles stay so', async () => {
    const covered = await api.command(await api.decide('revoke', callCentre, { reason: 'Call-centre agents targeted too' }));
    expect(covered.systems).toEqual([expect.objectContaining({ systemId: crm, changed: false, status: 'enforced' })]);

    const done = await api.until(await api.restoreWithApproval(backOffice, { reason: 'Credentials rotated' }));
    expect(done.systems).toEqual([
      expect.objectContaining({ systemId: crm, changed: false, desiredState: 'revoked' }),
      expect.objectContaining({ systemId: stock, changed: true, desiredState: 'active', status: 'enforced' }),
    ]);
    expect(await stockDb.canLogIn('clerk')).toBe(true);
    expect(await stockDb.canLogIn('dormant')).toBe(false);
    expect(await crmDb.canLogIn('clerk')).toBe(false);

    await api.until(await api.restoreWithApproval(callCentre, { reason: 'Call centre cleared' }));
    expect(await crmDb.canLogIn('clerk')).toBe(true);
    expect(await crmDb.canLogIn('dormant')).toBe(false);
  });

  it('an adapter stopped during a revoke enforces it when it starts again', async () => {
    await adapter!.stop();
    adapter = undefined;
    const commandId = await api.decide('revoke', backOffice, { reason: 'Second wave', incidentRef: 'INC-2042' });
    expect((await api.command(commandId)).status).toBe('pending');
    expect(await stockDb.canLogIn('clerk')).toBe(true);

    adapter = await startPostgresAdapter(adapterConfig);
    await api.until(commandId);
    expect(await stockDb.canLogIn('clerk')).toBe(false);
    expect(await crmDb.canLogIn('clerk')).toBe(false);

    const adapters = await api.get<unknown[]>('/adapters');
    expect(adapters).toEqual(expect.arrayContaining([expect.objectContaining({ id: adapterId, kind: 'postgres', status: 'online' })]));

    await api.until(await api.restoreWithApproval(backOffice, { reason: 'Second wave contained' }));
    expect(await stockDb.canLogIn('clerk')).toBe(true);
  });

  it('re-delivered and stale events change nothing: an old revoke cannot undo the newer restore', async () => {
    const { rows: events } = await service.db.query<{ message_key: string; partition_key: string; payload: string }>(
      `SELECT message_key, partition_key, payload FROM outbox WHERE message_key = $1 ORDER BY id`,
      [stock],
    );
    expect(events.map((event) => JSON.parse(event.payload).generation)).toEqual([1, 2, 3, 4]);
    const ackGenerations = async () =>
      (await service.db.query<{ generation: string; status: string }>(
        'SELECT generation, status FROM acknowledgements WHERE system_id = $1 ORDER BY received_at',
        [stock],
      )).rows.map((row) => `${row.status}@${row.generation}`);
    const acksBefore = (await ackGenerations()).length;

    // Publish every past event for the stock system again, oldest first (the latest one, a restore, last).
    const producer = new ReliableProducer(createKafka({ brokers: env.kafka.brokers, clientId: 'replayer' }));
    await producer.send(
      events.map((event) => ({ topic: Topics.systemAccess, key: event.message_key, partitionKey: event.partition_key, value: event.payload })),
    );
    await producer.disconnect();

    // A marker on the same key (same route and partition, so it is consumed after the replays): a new revoke.
    await api.until(await api.decide('revoke', backOffice, { reason: 'Marker after replay' }));
    // Only the marker was acknowledged for the stock system (its `enforced`, and `delivered` if the
    // enforcement took longer than the adapter's delivered delay): none of the replays.
    const added = (await ackGenerations()).slice(acksBefore);
    expect(added).toContain('enforced@5');
    expect(added.every((ack) => ack.endsWith('@5'))).toBe(true);
    expect(adapter!.system(stock)?.desired?.generation).toBe(5);

    await api.until(await api.restoreWithApproval(backOffice, { reason: 'Marker done' }));
    expect(await stockDb.canLogIn('clerk')).toBe(true);
    expect(await stockDb.canLogIn('dormant')).toBe(false);
  });

  it('drift: access given back by hand while revoked is withdrawn again and shows in the history', async () => {
    const commandId = await api.decide('revoke', backOffice, { reason: 'Drift check', incidentRef: 'INC-2043' });
    await api.until(commandId);
    await stockDb.grantLoginOutOfBand('clerk'); // an administrator works around the incident response
    expect(await stockDb.canLogIn('clerk')).toBe(true);

    await adapter!.verifyNow(stock);
    expect(await stockDb.canLogIn('clerk')).toBe(false);
    const drift = await eventually(async () => {
      const history = await api.get<{ items: { action: string; actor: string; details: Record<string, unknown> }[] }>(
        `/audit?systemId=${stock}&action=drift.detected`,
      );
      expect(history.items).toHaveLength(1);
      return history.items[0];
    });
    expect(drift).toMatchObject({ actor: `adapter:${adapterId}`, details: expect.objectContaining({ observedState: 'active' }) });
    expect(drift.details.principals).toEqual([stockDb.role('clerk')]);
    const system = await api.get<{ lastDrift: { detail: string } | null; enforcement: { status: string } }>(`/systems/${stock}`);
    expect(system.lastDrift?.detail).toContain(stockDb.role('clerk'));
    expect(system.enforcement.status).toBe('enforced');

    await api.until(await api.restoreWithApproval(backOffice, { reason: 'Drift check over' }));
    expect(await stockDb.canLogIn('clerk')).toBe(true); // restore still gives back exactly the prior set
    expect(await stockDb.canLogIn('dormant')).toBe(false);
  });
});
