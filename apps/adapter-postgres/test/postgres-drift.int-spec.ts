import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import * as path from 'node:path';
import { Client, escapeIdentifier } from 'pg';
import { JsonLogger, startAdapter, type RunningAdapter } from '@portcullis/adapter-kit';
import { FakeDesiredStateSource, RecordingEventPublisher, systemAccessChanged, testAdapterKeySettings } from '@portcullis/adapter-kit/testing';
import { eventually } from '@test/support/eventually';
import { readTestEnv } from '@test/support/test-env';
import { PostgresRoleEnforcer } from '../src/postgres-role.enforcer';
import { PostgresSystemConfigSchema } from '../src/postgres-system.config';

/*
 * Verification on a real PostgreSQL server, through the adapter runtime: after a revoke, an administrator
 * gives a role LOGIN back by hand; the next verification reports that drift naming the role, takes LOGIN
 * again and acknowledges that afresh, and restore still gives back exactly what was taken. Kafka is
 * replaced by the kit's fakes (the wire is covered by the kit's Kafka spec). The cluster is shared with
 * other specs: roles carry a prefix unique to this run and the spec ends restored.
 */
const env = readTestEnv();
const adminUrl = env.postgres.targetUrls[0];
const PREFIX = `pd_${randomBytes(3).toString('hex')}_`;
const SYSTEM = 'stock-db';

describe('adapter-postgres verification against PostgreSQL', () => {
  const admin = new Client({ connectionString: adminUrl });
  const source = new FakeDesiredStateSource();
  const publisher = new RecordingEventPublisher();
  const clerk = `${PREFIX}clerk`;
  const dormant = `${PREFIX}dormant`;
  let adapter: RunningAdapter;

  async function canLogin(role: string): Promise<boolean | undefined> {
    const { rows } = await admin.query<{ rolcanlogin: boolean }>('select rolcanlogin from pg_roles where rolname = $1', [role]);
    return rows[0]?.rolcanlogin;
  }

  function decision(generation: number, state: 'revoked' | 'active') {
    return systemAccessChanged({ systemId: SYSTEM, systemKind: 'postgres', adapterId: 'pg-verify', generation, state });
  }

  beforeAll(async () => {
    admin.on('error', () => undefined);
    await admin.connect();
    await admin.query(`CREATE ROLE ${escapeIdentifier(clerk)} LOGIN`);
    await admin.query(`CREATE ROLE ${escapeIdentifier(dormant)} NOLOGIN`);
    adapter = await startAdapter({
      enforcer: new PostgresRoleEnforcer(),
      systemConfigSchema: PostgresSystemConfigSchema,
      config: {
        adapterId: 'pg-verify',
        stateDir: mkdtempSync(path.join(env.workDir, 'pg-drift-')),
        deliveredAckDelayMs: 0,
        ...testAdapterKeySettings(),
        systems: { [SYSTEM]: { url: adminUrl } },
      },
      logger: new JsonLogger({ level: 'error' }),
      transport: { source, publisher },
    });
  });

  afterAll(async () => {
    await adapter.stop();
    for (const role of [clerk, dormant]) await admin.query(`DROP ROLE IF EXISTS ${escapeIdentifier(role)}`);
    await admin.end();
  });

  it('reports a role given LOGIN back by hand as drift, revokes it again, and restore still gives back exactly what was taken', async () => {
    const revoke = decision(1, 'revoked');
    await source.deliver(revoke);
    await eventually(() => expect(adapter.system(SYSTEM)).toMatchObject({ converged: true, applied: { generation: 1 } }));
    expect(await canLogin(clerk)).toBe(false);

    await admin.query(`ALTER ROLE ${escapeIdentifier(clerk)} LOGIN`);
    await adapter.verifyNow(SYSTEM);

    expect(publisher.trail(SYSTEM)).toEqual(['delivered@1', 'enforced@1', 'drift@1', 'enforced@1']);
    expect(publisher.drifts[0]).toMatchObject({
      commandId: revoke.commandId,
      generation: 1,
      data: {
        desiredState: 'revoked',
        observedState: 'active',
        detail: expect.stringContaining(clerk),
        principals: expect.arrayContaining([clerk]),
      },
    });
    expect(publisher.acknowledgements.at(-1)?.data).toMatchObject({
      status: 'enforced',
      detail: expect.stringContaining(`LOGIN removed from 1 role (${clerk})`),
      principalsChanged: 1,
    });
    expect(await canLogin(clerk)).toBe(false);

    await adapter.verifyNow(SYSTEM);
    expect(publisher.drifts).toHaveLength(1);
    expect(adapter.system(SYSTEM)?.lastVerification).toMatchObject({ generation: 1, observedState: 'revoked' });

    await source.deliver(decision(2, 'active'));
    await eventually(() => expect(adapter.system(SYSTEM)).toMatchObject({ converged: true, applied: { generation: 2 } }));
    expect([await canLogin(clerk), await canLogin(dormant)]).toEqual([true, false]);
  });
});
