import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { APP_ROLE } from '../src/database/migrations/1764400150000-AppRoleGrants';
import { OutboxPruner, PRUNE_BATCH_SIZE } from '../src/outbox/outbox.pruner';

/**
 * The outbox keeps published rows only for `outboxRetentionHours`: real decisions are published, some of
 * their rows are aged (their `published_at` set back through the superuser pool), and the pruner — running
 * as the service's restricted login role — deletes exactly the published rows older than the retention.
 *
 * A row the relay has not published must survive, however old. Inserting one would race the relay (the
 * insert trigger wakes it at commit), so the spec takes a row that was published and sets its
 * `published_at` back to NULL: an UPDATE fires no NOTIFY, and with the relay's safety sweep set to
 * 10 minutes nothing wakes the relay until the next insert — the row stays unpublished, deterministically,
 * for as long as the spec needs, and is marked published again before anything is inserted.
 */
describe('pruning the outbox', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  /** Long enough that the relay's safety sweep never runs during a test. */
  const noSweep = { outboxSweepIntervalMs: 600_000 };

  const outboxIds = async (service: RunningPolicyService): Promise<string[]> =>
    (await service.db.query<{ id: string }>('SELECT id FROM outbox ORDER BY id')).rows.map((row) => row.id);
  const allPublished = (service: RunningPolicyService) =>
    eventually(async () => {
      const { rows } = await service.db.query('SELECT count(*)::int AS count FROM outbox WHERE published_at IS NULL');
      if (rows[0].count !== 0) throw new Error(`${rows[0].count} outbox row(s) not published yet`);
    });
  /** Sets the rows' `published_at` back by `age` (a PostgreSQL interval). */
  const age = (service: RunningPolicyService, ids: string[], interval: string) =>
    service.db.query(`UPDATE outbox SET published_at = now() - $2::interval WHERE id = ANY($1::bigint[])`, [ids, interval]);
  const existing = async (service: RunningPolicyService, ids: string[]): Promise<string[]> =>
    (await service.db.query<{ id: string }>('SELECT id FROM outbox WHERE id = ANY($1::bigint[]) ORDER BY id', [ids])).rows.map(
      (row) => row.id,
    );
  const health = async (service: RunningPolicyService) => (await service.http().get('/api/v1/health').expect(200)).body;

  /** Registers `groups` groups of two systems each; returns their ids. */
  async function setUp(api: PolicyApi, prefix: string, groups: number): Promise<string[]> {
    const adapterId = `${prefix}-adapter-${suffix}`;
    const ids: string[] = [];
    for (let g = 1; g <= groups; g += 1) {
      const systems = [`${prefix}-g${g}-a-${suffix}`, `${prefix}-g${g}-b-${suffix}`];
      for (const system of systems) await api.registerSystem(system, adapterId);
      const groupId = `${prefix}-g${g}-${suffix}`;
      await api.createGroup(groupId, systems);
      ids.push(groupId);
    }
    return ids;
  }

  /** Revokes the group and waits until its outbox rows are published; returns their ids. */
  async function revokeAndPublish(service: RunningPolicyService, api: PolicyApi, groupId: string): Promise<string[]> {
    const before = new Set(await outboxIds(service));
    await api.decide('revoke', groupId, { reason: 'Contain INC-42', incidentRef: 'INC-42' });
    await allPublished(service);
    const added = (await outboxIds(service)).filter((id) => !before.has(id));
    expect(added.length).toBeGreaterThanOrEqual(2); // one per system at least
    return added;
  }

  describe('with a retention of 24 hours', () => {
    let service: RunningPolicyService;
    let api: PolicyApi;
    let pruner: OutboxPruner;
    let groups: string[];

    beforeAll(async () => {
      // Timer hourly: after the run at start, only the spec's own pruneNow() calls prune.
      service = await startPolicyService(env, { ...noSweep, outboxRetentionHours: 24, outboxPruneIntervalMs: 3_600_000 });
      api = new PolicyApi(service);
      pruner = service.app.get(OutboxPruner);
      groups = await setUp(api, 'prune', 3);
      await pruner.pruneNow(); // after the run at start (runs are serialised)
    });

    afterAll(async () => {
      await service?.stop();
      await service?.db.end();
    });

    it('deletes only published rows older than the retention, as the restricted login role', async () => {
      const old = await revokeAndPublish(service, api, groups[0]);
      const recent = await revokeAndPublish(service, api, groups[1]);
      const fresh = await revokeAndPublish(service, api, groups[2]);
      await age(service, old, '25 hours');
      await age(service, recent, '23 hours');
      // Stuck since a month (Kafka down, say): never published, so kept however old. See the spec's comment.
      const [stuck, ...oldPublished] = old;
      await service.db.query(
        `UPDATE outbox SET published_at = NULL, created_at = now() - interval '30 days' WHERE id = $1`,
        [stuck],
      );

      expect(await pruner.pruneNow()).toBe(oldPublished.length);

      expect(await existing(service, oldPublished)).toEqual([]);
      expect(await existing(service, [stuck, ...recent, ...fresh])).toEqual([stuck, ...recent, ...fresh].sort((a, b) => Number(a) - Number(b)));
      const { rows } = await service.db.query('SELECT published_at FROM outbox WHERE id = $1', [stuck]);
      expect(rows[0].published_at).toBeNull(); // the relay did not touch it meanwhile: the case was really tested

      // The service deleted them as its own restricted role (a member of portcullis_app, not a superuser).
      const [role] = await service.app.get(DataSource).query(
        `SELECT current_user AS name, r.rolsuper AS superuser, pg_has_role(current_user, $1, 'MEMBER') AS member
         FROM pg_roles r WHERE r.rolname = current_user`,
        [APP_ROLE],
      );
      expect(role).toMatchObject({ superuser: false, member: true });
      expect(role.name).not.toBe(new URL(service.config.databaseMigrationUrl!).username);

      expect((await health(service)).outbox.pruning).toEqual({
        retentionHours: 24,
        lastPrunedAt: expect.any(String),
        lastDeleted: oldPublished.length,
        lastError: null,
      });

      // The stuck row was published in truth: mark it so again before anything wakes the relay.
      await age(service, [stuck], '1 minute');
      expect(await pruner.pruneNow()).toBe(0);
    });

    it('deletes in bounded batches, one statement each, until a batch comes back short', async () => {
      const count = 2 * PRUNE_BATCH_SIZE + 123;
      // Already published (nothing for the relay), a month ago.
      await service.db.query(
        `INSERT INTO outbox (topic, message_key, payload, created_at, published_at)
         SELECT 'portcullis.pruning-test', 'k' || g, '{}', now() - interval '30 days', now() - interval '30 days'
         FROM generate_series(1, $1::int) g`,
        [count],
      );
      const dataSource = service.app.get(DataSource);
      const query = jest.spyOn(dataSource, 'query');
      try {
        expect(await pruner.pruneNow()).toBe(count);
        const deletes = query.mock.calls.filter(([sql]) => /DELETE FROM outbox/.test(sql));
        expect(deletes).toHaveLength(3);
      } finally {
        query.mockRestore();
      }
      const { rows } = await service.db.query(`SELECT count(*)::int AS count FROM outbox WHERE topic = 'portcullis.pruning-test'`);
      expect(rows[0].count).toBe(0);
    });
  });

  describe('on its own, every interval', () => {
    let service: RunningPolicyService;
    let api: PolicyApi;

    beforeAll(async () => {
      service = await startPolicyService(env, { ...noSweep, outboxRetentionHours: 1, outboxPruneIntervalMs: 200 });
      api = new PolicyApi(service);
    });

    afterAll(async () => {
      await service?.stop();
      await service?.db.end();
    });

    it('prunes rows as they pass the retention, and keeps the others', async () => {
      const [first, second] = await setUp(api, 'tick', 2);
      const old = await revokeAndPublish(service, api, first);
      const fresh = await revokeAndPublish(service, api, second);
      await age(service, old, '61 minutes');
      await eventually(async () => expect(await existing(service, old)).toEqual([]), 10_000);
      expect(await existing(service, fresh)).toEqual(fresh);
      expect((await health(service)).outbox.pruning).toMatchObject({ retentionHours: 1, lastError: null });
    });
  });

  describe('with a retention of 0', () => {
    let service: RunningPolicyService;
    let api: PolicyApi;

    beforeAll(async () => {
      service = await startPolicyService(env, { ...noSweep, outboxRetentionHours: 0, outboxPruneIntervalMs: 200 });
      api = new PolicyApi(service);
    });

    afterAll(async () => {
      await service?.stop();
      await service?.db.end();
    });

    it('never prunes', async () => {
      const [groupId] = await setUp(api, 'keep', 1);
      const rows = await revokeAndPublish(service, api, groupId);
      await age(service, rows, '10 years');
      // The one deliberate wait of the spec: it asserts an absence, over five prune intervals.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(await service.app.get(OutboxPruner).pruneNow()).toBe(0);
      expect(await existing(service, rows)).toEqual(rows);
      expect((await health(service)).outbox.pruning).toEqual({ retentionHours: 0, lastPrunedAt: null, lastDeleted: null, lastError: null });
    });
  });
});
