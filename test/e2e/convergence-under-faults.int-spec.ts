import type { RunningAdapter } from '@portcullis/adapter-kit';
import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { postgresAdapterConfig, startPostgresAdapter } from '@test/support/postgres-adapter';
import { PostgresTarget } from '@test/support/postgres-target';
import { TcpProxy } from '@test/support/tcp-proxy';
import { readTestEnv, testServers } from '@test/support/test-env';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { RELAY_LOCK_KEY } from '../../apps/policy-service/src/outbox/outbox.relay';

/**
 * Enforcement converges whatever fails: adapter crashes, adapters that were down, a broker restart,
 * a policy service stopped between committing and publishing, a target that is down. Each test
 * asserts the final state of the real target and what the policy service recorded.
 */
describe('convergence under faults', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const stockDb = new PostgresTarget(env.postgres.targetUrls[0], `fault_${suffix}_`);
  const crmDb = new PostgresTarget(env.postgres.targetUrls[1], `fault_${suffix}_`);
  const adapters: RunningAdapter[] = [];
  let service: RunningPolicyService;
  let api: PolicyApi;

  /** A system on `target`, in a group of its own, served by a fresh adapter id. */
  async function scenario(name: string, targetUrls: Record<string, string>) {
    const adapterId = `pg-${name}-${suffix}`;
    const groupId = `${name}-${suffix}`;
    for (const systemId of Object.keys(targetUrls)) await api.registerSystem(systemId, adapterId);
    await api.createGroup(groupId, Object.keys(targetUrls));
    const config = postgresAdapterConfig(env, adapterId, join(env.workDir, `adapter-${adapterId}`), targetUrls);
    const start = async () => {
      const adapter = await startPostgresAdapter(config);
      adapters.push(adapter);
      return adapter;
    };
    return { adapterId, groupId, config, start };
  }

  async function acknowledgements(systemId: string): Promise<{ generation: number; status: string }[]> {
    const { rows } = await service.db.query(
      'SELECT generation::int, status FROM acknowledgements WHERE system_id = $1 ORDER BY received_at',
      [systemId],
    );
    return rows;
  }

  beforeAll(async () => {
    for (const target of [stockDb, crmDb]) await target.createRoles({ clerk: 'LOGIN', dormant: 'NOLOGIN' });
    service = await startPolicyService(env);
    api = new PolicyApi(service);
  });

  afterEach(async () => {
    for (const adapter of adapters.splice(0)) await adapter.stop();
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('an adapter killed after enforcing and before acknowledging: one effect, and the acknowledgement arrives after restart', async () => {
    const system = `crash-${suffix}`;
    const { groupId, config, start } = await scenario('crash', { [system]: stockDb.url });
    const configFile = join(env.workDir, `crash-${suffix}.json`);
    writeFileSync(configFile, JSON.stringify(config));
    const root = resolve(__dirname, '../..');
    // `--import tsx` runs the TypeScript in this very process, so the SIGKILL is the process we watch.
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/crashing-postgres-adapter.ts', configFile], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<NodeJS.Signals | null>((resolveExit) => child.on('exit', (_code, signal) => resolveExit(signal)));

    const commandId = await api.decide('revoke', groupId, { reason: 'Crash test' });
    expect({ signal: await exited, stderr }).toEqual({ signal: 'SIGKILL', stderr: '' });
    expect(await stockDb.canLogIn('clerk')).toBe(false); // the effect happened ...
    expect((await api.command(commandId)).status).not.toBe('enforced'); // ... but was never acknowledged

    await start();
    const done = await api.until(commandId);
    expect(done.systems[0]).toMatchObject({ status: 'enforced', principalsChanged: 0 });
    expect((await acknowledgements(system)).filter((ack) => ack.status === 'enforced')).toEqual([{ generation: 1, status: 'enforced' }]);

    await api.until(await api.restoreWithApproval(groupId, { reason: 'Crash test over' }));
    expect(await stockDb.canLogIn('clerk')).toBe(true); // the journal survived the crash
    expect(await stockDb.canLogIn('dormant')).toBe(false);
  });

  it('an adapter down through revoke, restore and revoke again converges to the last decision only', async () => {
    const system = `late-${suffix}`;
    const { groupId, start } = await scenario('late', { [system]: crmDb.url });
    const first = await api.decide('revoke', groupId, { reason: 'First' });
    const second = await api.restoreWithApproval(groupId, { reason: 'Second' });
    const third = await api.decide('revoke', groupId, { reason: 'Third' });

    await start();
    await api.until(third);
    expect((await api.command(first)).systems[0].status).toBe('superseded');
    expect((await api.command(second)).systems[0].status).toBe('superseded');
    expect((await acknowledgements(system)).filter((ack) => ack.status === 'enforced')).toEqual([{ generation: 3, status: 'enforced' }]);
    expect(await crmDb.canLogIn('clerk')).toBe(false);

    await api.until(await api.restoreWithApproval(groupId, { reason: 'Done' }));
    expect(await crmDb.canLogIn('clerk')).toBe(true);
    expect(await crmDb.canLogIn('dormant')).toBe(false);
  });

  it('a broker restarted while a command is in flight: nothing lost, the command completes', async () => {
    const system = `broker-${suffix}`;
    const { groupId, start } = await scenario('broker', { [system]: stockDb.url });
    const adapter = await start();
    await testServers(env).kafka.stop();
    let commandId: string;
    try {
      commandId = await api.decide('revoke', groupId, { reason: 'Revoked while the broker was down' });
    } finally {
      await testServers(env).kafka.start();
    }
    await api.until(commandId, 'enforced', 90_000).catch(async (error: Error) => {
      // Which side did not recover: the relay (not published) or the adapter (published, not received)?
      const { rows: outbox } = await service.db.query('SELECT id, published_at FROM outbox WHERE message_key = $1', [system]);
      const relay = (await service.http().get('/api/v1/health')).body?.outbox;
      throw new Error(
        `${error.message}\noutbox rows for ${system}: ${JSON.stringify(outbox)}\nrelay: ${JSON.stringify(relay)}\n` +
          `adapter: ${JSON.stringify({ connected: adapter.status().connected, system: adapter.system(system) })}`,
      );
    });
    expect(await stockDb.canLogIn('clerk')).toBe(false);
    const { rows } = await service.db.query('SELECT count(*)::int AS unpublished FROM outbox WHERE published_at IS NULL');
    expect(rows[0].unpublished).toBe(0);

    await api.until(await api.restoreWithApproval(groupId, { reason: 'Broker back' }), 'enforced', 60_000);
    expect(await stockDb.canLogIn('clerk')).toBe(true);
  });

  it('a policy service stopped between committing a command and publishing it publishes it after restart', async () => {
    const system = `relay-${suffix}`;
    const { groupId, start } = await scenario('relay', { [system]: crmDb.url });
    await start();
    // Hold the relay's leadership lock, so the committed command cannot be published ...
    await service.stop();
    const lock = new Client({ connectionString: service.config.databaseUrl });
    await lock.connect();
    await lock.query('SELECT pg_advisory_lock($1)', [RELAY_LOCK_KEY]);
    await service.restart();
    const commandId = await api.decide('revoke', groupId, { reason: 'Committed, not yet published' });
    const unpublished = async () =>
      (await service.db.query('SELECT count(*)::int AS count FROM outbox WHERE published_at IS NULL')).rows[0].count;
    expect(await unpublished()).toBe(1);
    // ... then stop the service with the command committed but unpublished, and start it again.
    await service.stop();
    await lock.end();
    expect(await unpublished()).toBe(1);
    await service.restart();

    await api.until(commandId);
    expect(await unpublished()).toBe(0);
    expect(await crmDb.canLogIn('clerk')).toBe(false);
    // The new leader could not know whether a relay before it had sent the message: a refused copy of it is explainable.
    const noted = await service.db.query(
      `SELECT u.message_key FROM outbox_uncertain_sends u JOIN outbox o ON o.id = u.outbox_id
       WHERE (o.payload::jsonb->>'commandId') = $1`,
      [commandId],
    );
    expect(noted.rows).toEqual([{ message_key: system }]);
    await api.until(await api.restoreWithApproval(groupId, { reason: 'Relay test over' }));
    expect(await crmDb.canLogIn('clerk')).toBe(true);
  });

  it('a target down during a revoke: failed and retrying, then enforced once it is back; other systems unaffected', async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(stockDb.url).port));
    const down = `down-${suffix}`;
    const healthy = `healthy-${suffix}`;
    const { groupId, start } = await scenario('outage', { [down]: proxy.url(stockDb.url), [healthy]: crmDb.url });
    await start();
    await proxy.down();
    try {
      const commandId = await api.decide('revoke', groupId, { reason: 'Revoked during an outage' });
      const partial = await api.until(commandId, 'partial');
      expect(partial.systems.find((target) => target.systemId === down)).toMatchObject({ status: 'failed', willRetry: true });
      expect(partial.systems.find((target) => target.systemId === healthy)).toMatchObject({ status: 'enforced' });
      expect(await crmDb.canLogIn('clerk')).toBe(false);

      await proxy.up();
      await api.until(commandId);
      expect(await stockDb.canLogIn('clerk')).toBe(false);
    } finally {
      await proxy.up().catch(() => undefined);
    }
    await api.until(await api.restoreWithApproval(groupId, { reason: 'Outage over' }));
    expect(await stockDb.canLogIn('clerk')).toBe(true);
    expect(await crmDb.canLogIn('clerk')).toBe(true);
    await proxy.down();
  });

  it('keeps waiting rather than guessing: the deadline makes an unacknowledged command overdue', async () => {
    const system = `silent-${suffix}`;
    const { groupId } = await scenario('silent', { [system]: stockDb.url });
    const commandId = await api.decide('revoke', groupId, { reason: 'Nobody serves this system' });
    await service.db.query(`UPDATE commands SET acknowledge_by = now() WHERE id = $1`, [commandId]);
    await eventually(async () => expect((await api.command(commandId)).status).toBe('overdue'));
    await api.restoreWithApproval(groupId, { reason: 'Cleanup' });
  });
});
