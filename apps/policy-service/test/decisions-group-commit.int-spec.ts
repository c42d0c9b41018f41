import { eventually } from '@test/support/eventually';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import { GroupDecisionsService } from '../src/commands/group-decisions.service';

interface AuditItem {
  seq: number;
  occurredAt: string;
  actor: string;
  action: string;
  groupId: string | null;
  commandId: string | null;
  details: Record<string, any>;
}

/** The service's private steps, spied on: what a decision hands in, and the transaction that records several. */
interface Internals {
  /** How long a decision transaction runs before another may start for the decisions waiting. */
  slowTransactionMs: number;
  batchLockTimeoutMs: number;
  maxWaitingDecisions: number;
  startLane(): void;
  submit(request: unknown): Promise<unknown>;
  planApplication(group: { id: string }, ...rest: unknown[]): unknown;
  decideTogether(manager: unknown, batch: readonly { request: { kind: string; decision?: { reason: string } } }[]): Promise<unknown>;
}

/**
 * Decisions (revokes, restores, restore requests and their answers) made while a transaction records others
 * are recorded together by the next one, against a real PostgreSQL: each is judged exactly as if it ran
 * alone after the ones before it, a refusal refuses that decision only, and each audit entry names how its
 * own caller authenticated.
 */
describe('decisions: group commit of concurrent decisions', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const adapterId = `dgc-adapter-${suffix}`;
  const sys = (name: string) => `dgc-${name}-${suffix}`;
  const grp = (name: string) => `dgc-g-${name}-${suffix}`;
  let service: RunningPolicyService;
  let internals: Internals;
  let alice: string;
  let bob: string;
  let ada: string;
  let auditor: string;
  let apiKey: string;
  let apiKeyId: string;

  const http = () => service.http();
  const revoke = (groupId: string, token = alice, reason = 'Contain INC-31') =>
    http().post(`/api/v1/groups/${groupId}/revoke`).auth(token, { type: 'bearer' }).send({ reason, incidentRef: 'INC-31' });
  const revokeWithKey = (groupId: string) =>
    http().post(`/api/v1/groups/${groupId}/revoke`).set('X-API-Key', apiKey).send({ reason: 'SOAR playbook', incidentRef: 'INC-31' });
  const restore = (groupId: string, token = alice) =>
    http().post(`/api/v1/groups/${groupId}/restore`).auth(token, { type: 'bearer' }).send({ reason: 'Rotated', incidentRef: 'INC-31' });
  const audit = async (query: string): Promise<AuditItem[]> =>
    (await http().get(`/api/v1/audit?limit=200&${query}`).auth(auditor, { type: 'bearer' }).expect(200)).body.items;
  const systemRows = async (ids: string[]) =>
    (await service.db.query<{ id: string; generation: string; desired_state: string }>(
      'SELECT id, generation, desired_state FROM systems WHERE id = ANY($1::text[]) ORDER BY id',
      [ids],
    )).rows.map((row) => `${row.id}@${row.generation}:${row.desired_state}`);

  async function createGroup(name: string, systems: string[]): Promise<void> {
    for (const id of systems) {
      const created = await http().post('/api/v1/systems').auth(ada, { type: 'bearer' }).send({ id, name: id, kind: 'postgres', adapterId });
      expect([201, 409]).toContain(created.status);
    }
    await http().post('/api/v1/groups').auth(ada, { type: 'bearer' }).send({ id: grp(name), name, systemIds: systems }).expect(201);
  }

  /**
   * Holds `systemIds` locked (as an acknowledgement batch would) so that the next decision about them waits
   * inside its transaction; `release` lets it go.
   */
  async function holdSystems(systemIds: string[]): Promise<{ release(): Promise<void> }> {
    const blocker: PoolClient = await service.db.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT id FROM systems WHERE id = ANY($1::text[]) FOR UPDATE', [systemIds]);
    let released = false;
    return {
      async release() {
        if (released) return;
        released = true;
        await blocker.query('COMMIT').catch(() => undefined);
        blocker.release();
      },
    };
  }

  const lockWaiters = async () =>
    (await service.db.query<{ waiting: number }>(
      `SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    )).rows[0].waiting;

  beforeAll(async () => {
    service = await startPolicyService(env);
    internals = service.app.get(GroupDecisionsService) as unknown as Internals;
    alice = service.token('alice', 'security-lead');
    bob = service.token('bob', 'security-lead');
    ada = service.token('ada', 'admin');
    auditor = service.token('audrey', 'auditor');
    const created = await http().post('/api/v1/api-keys').auth(ada, { type: 'bearer' })
      .send({ name: `soar-${suffix}`, roles: ['security-lead'] }).expect(201);
    apiKey = created.body.key;
    apiKeyId = created.body.id;
  });

  // These specs hold locks on purpose to let decisions gather: no second transaction starts meanwhile
  // (the last spec tests that one does, at the service's own threshold).
  let slowTransactionMs: number;
  beforeEach(() => {
    slowTransactionMs = internals.slowTransactionMs;
    internals.slowTransactionMs = 60_000;
  });
  afterEach(() => {
    internals.slowTransactionMs = slowTransactionMs;
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('records decisions made meanwhile in one transaction, each judged as alone, in the order they came', async () => {
    await createGroup('first', [sys('a1')]);
    await createGroup('two', [sys('b1'), sys('b2')]);
    await createGroup('three', [sys('c1')]);
    await createGroup('four', [sys('d1')]);
    await revoke(grp('four')).expect(202);
    const submitted = jest.spyOn(internals, 'submit');
    const together = jest.spyOn(internals, 'decideTogether');
    const held = await holdSystems([sys('a1')]);
    let answers;
    try {
      // The first decision's transaction waits on the held system; the others arrive meanwhile, in this order.
      const first = revoke(grp('first')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const rest: Promise<{ status: number; body: any }>[] = [];
      const arrive = async (send: () => PromiseLike<{ status: number; body: any }>) => {
        const before = submitted.mock.calls.length;
        rest.push(Promise.resolve(send()));
        await eventually(async () => expect(submitted.mock.calls.length).toBe(before + 1));
      };
      await arrive(() => revoke(grp('two'), alice));
      await arrive(() => revoke(grp('two'), bob)); // the same group: waits for the next transaction, then a repeat
      await arrive(() => revokeWithKey(grp('three')));
      await arrive(() => revoke(`dgc-unknown-${suffix}`));
      await arrive(() => restore(grp('four'))); // a four-eyes request
      await held.release();
      answers = await Promise.all([first, ...rest]);
    } finally {
      await held.release();
      submitted.mockRestore();
    }
    const batches = together.mock.calls.map((call) => call[1].length);
    together.mockRestore();

    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 200, 202, 404, 202]);
    const [, twoFirst, twoAgain, three, unknown, requested] = answers;
    expect(twoAgain.body).toMatchObject({ accepted: false, commandId: twoFirst.body.commandId });
    expect(unknown.body.message).toContain('dgc-unknown');
    expect(requested.body).toMatchObject({ accepted: true, status: 'awaiting-approval' });
    expect(three.body.command.systems).toEqual([expect.objectContaining({ systemId: sys('c1'), changed: true, status: 'pending' })]);
    // The first alone; the five that came meanwhile together; the repeat about group two in the next one.
    expect(batches).toEqual([1, 5, 1]);

    const recorded = await audit(`action=group.revoked`);
    const entryOf = (groupId: string) => recorded.find((entry) => entry.groupId === groupId)!;
    // One transaction: its entries share the commit's time, in the order the decisions came.
    const second = [entryOf(grp('two')), entryOf(grp('three')), (await audit(`commandId=${requested.body.commandId}`))[0]];
    expect(new Set(second.map((entry) => entry.occurredAt)).size).toBe(1);
    expect(second.map((entry) => entry.seq)).toEqual([...second.map((entry) => entry.seq)].sort((a, b) => a - b));
    // Each entry names its own caller and how that caller authenticated.
    expect(entryOf(grp('two'))).toMatchObject({ actor: 'user:alice', details: expect.objectContaining({ via: 'local-token' }) });
    expect(entryOf(grp('three'))).toMatchObject({
      actor: `user:apikey:${apiKeyId}`,
      details: expect.objectContaining({ via: 'api-key', apiKeyName: `soar-${suffix}` }),
    });
    expect((await audit(`groupId=${grp('two')}&action=group.revoke.repeated`))[0]).toMatchObject({
      actor: 'user:bob',
      details: expect.objectContaining({ via: 'local-token' }),
    });
    const verified = await http().get('/api/v1/audit/verify').auth(auditor, { type: 'bearer' }).expect(200);
    expect(verified.body).toMatchObject({ intact: true, breaks: 0 });
  });

  it('a decision about systems an earlier one in the batch changed is recorded after it: as one after the other', async () => {
    await createGroup('left', [sys('l1'), sys('shared')]);
    await createGroup('right', [sys('shared'), sys('r1')]);
    await createGroup('gate', [sys('gate')]);
    const before = await systemRows([sys('l1'), sys('shared'), sys('r1')]);
    const submitted = jest.spyOn(internals, 'submit');
    const together = jest.spyOn(internals, 'decideTogether');
    const held = await holdSystems([sys('gate')]);
    let answers;
    try {
      const gate = revoke(grp('gate')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const left = revoke(grp('left')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(2));
      const right = revoke(grp('right')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(3));
      await held.release();
      answers = await Promise.all([gate, left, right]);
    } finally {
      await held.release();
      submitted.mockRestore();
    }
    const batches = together.mock.calls.map((call) => call[1].length);
    together.mockRestore();

    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202]);
    expect(batches).toEqual([1, 2, 1]);
    const [, left, right] = answers;
    expect(left.body.command.systems.map((s: any) => [s.systemId, s.changed])).toEqual([
      [sys('l1'), true],
      [sys('shared'), true],
    ]);
    // The shared system was revoked by the left group: the right one leaves it as it is.
    expect(right.body.command.systems).toEqual([
      expect.objectContaining({ systemId: sys('r1'), changed: true }),
      expect.objectContaining({ systemId: sys('shared'), changed: false, detail: expect.stringContaining(grp('left')) }),
    ]);
    const generation = (row: string) => Number(row.split('@')[1].split(':')[0]);
    const after = await systemRows([sys('l1'), sys('shared'), sys('r1')]);
    expect(after.map(generation)).toEqual(before.map((row) => generation(row) + 1));
    expect(after.every((row) => row.endsWith(':revoked'))).toBe(true);
  });

  it('a decision waiting for the next transaction holds back what comes after it on the same systems: arrival order', async () => {
    // first = {o1}; both = {o1, o2}; other = {o2}, revoked, restored by one admin. In arrival order: revoke
    // first, revoke both (waits: first changed o1), restore other (must not give o2 back: both holds it).
    await createGroup('o-first', [sys('o1')]);
    await createGroup('o-both', [sys('o1'), sys('o2')]);
    await createGroup('o-other', [sys('o2')]);
    await createGroup('o-gate', [sys('o-gate')]);
    await http().put(`/api/v1/groups/${grp('o-other')}/restore-approval`).auth(ada, { type: 'bearer' })
      .send({ restoreApproval: 'single-admin', reason: 'restored by the on-call admin' }).expect(200);
    await revoke(grp('o-other')).expect(202);
    const submitted = jest.spyOn(internals, 'submit');
    const together = jest.spyOn(internals, 'decideTogether');
    const held = await holdSystems([sys('o-gate')]);
    let answers;
    try {
      const gate = revoke(grp('o-gate')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const rest: Promise<{ status: number; body: any }>[] = [];
      for (const send of [() => revoke(grp('o-first')), () => revoke(grp('o-both')), () => restore(grp('o-other'), ada)]) {
        const before = submitted.mock.calls.length;
        rest.push(send().then((r) => r));
        await eventually(async () => expect(submitted.mock.calls.length).toBe(before + 1));
      }
      await held.release();
      answers = await Promise.all([gate, ...rest]);
    } finally {
      await held.release();
      submitted.mockRestore();
    }
    const batches = together.mock.calls.map((call) => call[1].length);
    together.mockRestore();

    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 202, 202]);
    // The restore waited with the revoke before it: o2 stayed revoked, held by both, and was never published active.
    expect(batches).toEqual([1, 3, 2]);
    expect(answers[3].body.command.systems).toEqual([
      expect.objectContaining({ systemId: sys('o2'), changed: false, detail: expect.stringContaining(grp('o-both')) }),
    ]);
    expect(await systemRows([sys('o2')])).toEqual([`${sys('o2')}@1:revoked`]);
  });

  it('when the merged transaction fails, records each decision alone: the bad one fails, the others land', async () => {
    await createGroup('good-1', [sys('g1')]);
    await createGroup('good-2', [sys('g2')]);
    await createGroup('bad', [sys('x1')]);
    await createGroup('hold', [sys('hold')]);
    const real = internals.decideTogether.bind(internals);
    const isBad = (batch: Parameters<Internals['decideTogether']>[1]) => batch.some((item) => item.request.decision?.reason === 'poison');
    // A transaction with the bad decision fails (injected: it stands for any decision the database refuses).
    const together = jest.spyOn(internals, 'decideTogether').mockImplementation(async (manager, batch) => {
      if (isBad(batch)) throw new Error('refused by the database');
      return real(manager, batch);
    });
    const submitted = jest.spyOn(internals, 'submit');
    const held = await holdSystems([sys('hold')]);
    let answers;
    try {
      const hold = revoke(grp('hold')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const rest = [revoke(grp('good-1')).then((r) => r), revoke(grp('bad'), alice, 'poison').then((r) => r), revoke(grp('good-2')).then((r) => r)];
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(4));
      await held.release();
      answers = await Promise.all([hold, ...rest]);
    } finally {
      await held.release();
      submitted.mockRestore();
    }
    const batches = together.mock.calls.map((call) => call[1].length);
    together.mockRestore();

    expect(answers.map((answer) => answer.status)).toEqual([202, 202, 500, 202]);
    // Together (failed), then each alone.
    expect(batches).toEqual([1, 3, 1, 1, 1]);
    expect(await systemRows([sys('g1'), sys('g2'), sys('x1')])).toEqual([`${sys('g1')}@1:revoked`, `${sys('g2')}@1:revoked`, `${sys('x1')}@0:active`]);
    expect(await audit(`groupId=${grp('bad')}&action=group.revoked`)).toEqual([]);
  });

  it('a decision whose plan fails part-way fails the merged transaction: each is recorded alone, none on a half-changed context', async () => {
    // The bad group's plan changes the shared system in memory, then fails (injected: it stands for any
    // unexpected error, e.g. a decision the contract refuses); the next decision must not see that change.
    await createGroup('half', [sys('half-shared'), sys('half-z')]);
    await createGroup('after', [sys('half-shared')]);
    await createGroup('hold-2', [sys('hold-2')]);
    const realPlan = internals.planApplication.bind(internals);
    const plans = jest.spyOn(internals, 'planApplication').mockImplementation((group, ...rest) => {
      const plan = realPlan(group, ...rest);
      if (group.id === grp('half')) throw new Error('the contract refuses this decision');
      return plan;
    });
    const together = jest.spyOn(internals, 'decideTogether');
    const submitted = jest.spyOn(internals, 'submit');
    const held = await holdSystems([sys('hold-2')]);
    let answers;
    try {
      const hold = revoke(grp('hold-2')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const half = revoke(grp('half')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(2));
      const after = revoke(grp('after')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(3));
      await held.release();
      answers = await Promise.all([hold, half, after]);
    } finally {
      await held.release();
      submitted.mockRestore();
      plans.mockRestore();
    }
    const batches = together.mock.calls.map((call) => call[1].length);
    together.mockRestore();

    expect(answers.map((answer) => answer.status)).toEqual([202, 500, 202]);
    expect(batches).toEqual([1, 2, 1, 1]);
    // The later revoke changed the shared system itself: it was not taken as revoked by the failed plan.
    expect(answers[2].body.command.systems).toEqual([expect.objectContaining({ systemId: sys('half-shared'), changed: true })]);
    expect(await systemRows([sys('half-shared'), sys('half-z')])).toEqual([`${sys('half-shared')}@1:revoked`, `${sys('half-z')}@0:active`]);
  });

  it('refuses a decision with 503 while too many wait, recording nothing for it', async () => {
    await createGroup('q-hold', [sys('q-hold')]);
    await createGroup('q-waits', [sys('q-waits')]);
    await createGroup('q-refused', [sys('q-refused')]);
    const maxWaiting = internals.maxWaitingDecisions;
    internals.maxWaitingDecisions = 1;
    const submitted = jest.spyOn(internals, 'submit');
    const held = await holdSystems([sys('q-hold')]);
    try {
      const hold = revoke(grp('q-hold')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const waits = revoke(grp('q-waits')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(2));
      const refused = await revoke(grp('q-refused'));
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ error: 'busy' });
      expect(refused.headers['retry-after']).toBe('1');
      await held.release();
      expect([(await hold).status, (await waits).status]).toEqual([202, 202]);
      expect(await systemRows([sys('q-refused')])).toEqual([`${sys('q-refused')}@0:active`]);
      expect(await audit(`groupId=${grp('q-refused')}&action=group.revoked`)).toEqual([]);
    } finally {
      internals.maxWaitingDecisions = maxWaiting;
      submitted.mockRestore();
      await held.release();
    }
  });

  it('a decision is not held up for long by another group waiting on a lock: another transaction takes it', async () => {
    internals.slowTransactionMs = slowTransactionMs;
    await createGroup('stuck', [sys('stuck')]);
    await createGroup('free', [sys('free')]);
    const held = await holdSystems([sys('stuck')]);
    try {
      const stuck = revoke(grp('stuck')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      // Answered while the other decision still waits.
      const free = await revoke(grp('free'));
      expect(free.status).toBe(202);
      expect(await lockWaiters()).toBe(1);
      await held.release();
      expect((await stuck).status).toBe(202);
    } finally {
      await held.release();
    }
  });

  it('decisions about one group wait in line, not in transactions: a decision about another group is not held up', async () => {
    internals.slowTransactionMs = slowTransactionMs;
    await createGroup('line', [sys('line')]);
    await createGroup('elsewhere', [sys('elsewhere')]);
    const submitted = jest.spyOn(internals, 'submit');
    const held = await holdSystems([sys('line')]);
    try {
      // Revokes of the same group (an automation retrying), each more than the slow threshold apart.
      const line = [revoke(grp('line')).then((r) => r)];
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      for (const n of [2, 3, 4, 5]) {
        line.push(revoke(grp('line'), alice, `retry ${n}`).then((r) => r));
        await eventually(async () => expect(submitted).toHaveBeenCalledTimes(n));
        await new Promise((resolve) => setTimeout(resolve, slowTransactionMs + 50));
      }
      // Only the first waits in the database; another group's revoke is answered meanwhile.
      expect(await lockWaiters()).toBe(1);
      expect((await revoke(grp('elsewhere'))).status).toBe(202);
      await held.release();
      expect((await Promise.all(line)).map((answer) => answer.status)).toEqual([202, 200, 200, 200, 200]);
    } finally {
      submitted.mockRestore();
      await held.release();
    }
  });

  it('a batch that waits on a lock too long is recorded one by one: the other decisions in it are answered', async () => {
    await createGroup('b-gate', [sys('b-gate')]);
    await createGroup('b-stuck', [sys('b-stuck')]);
    await createGroup('b-free', [sys('b-free')]);
    const submitted = jest.spyOn(internals, 'submit');
    const together = jest.spyOn(internals, 'decideTogether');
    const gate = await holdSystems([sys('b-gate')]);
    const stuckLock = await holdSystems([sys('b-stuck')]);
    try {
      const first = revoke(grp('b-gate')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const stuck = revoke(grp('b-stuck')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(2));
      const free = revoke(grp('b-free')).then((r) => r);
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(3));
      // The two now go into one transaction, which waits for the stuck group's system.
      internals.slowTransactionMs = slowTransactionMs;
      await gate.release();
      expect((await first).status).toBe(202);
      expect((await free).status).toBe(202);
      expect(await lockWaiters()).toBe(1);
      await stuckLock.release();
      expect((await stuck).status).toBe(202);
      expect(await systemRows([sys('b-stuck'), sys('b-free')])).toEqual([`${sys('b-free')}@1:revoked`, `${sys('b-stuck')}@1:revoked`]);
      // The gate alone; the two together (gave up the wait after the lock timeout); then each alone.
      expect(together.mock.calls.map((call) => call[1].length)).toEqual([1, 2, 1, 1]);
    } finally {
      together.mockRestore();
      submitted.mockRestore();
      await gate.release();
      await stuckLock.release();
    }
  });

  it("a batch's lock timeout does not cut its wait for the audit chain at COMMIT: the batch commits whole", async () => {
    await createGroup('h-a', [sys('h-a')]);
    await createGroup('h-b', [sys('h-b')]);
    await createGroup('h-c', [sys('h-c')]);
    const lockTimeout = internals.batchLockTimeoutMs;
    internals.batchLockTimeoutMs = 200;
    const submitted = jest.spyOn(internals, 'submit');
    const together = jest.spyOn(internals, 'decideTogether');
    // Every recording transaction takes the chain's head at COMMIT (migration AuditLinkedAtCommit).
    const head: PoolClient = await service.db.connect();
    let released = false;
    const releaseHead = async () => {
      if (released) return;
      released = true;
      await head.query('COMMIT').catch(() => undefined);
      head.release();
    };
    try {
      await head.query('BEGIN');
      await head.query('SELECT seq FROM audit_chain_head FOR UPDATE');
      const first = revoke(grp('h-a')).then((r) => r);
      await eventually(async () => expect(await lockWaiters()).toBe(1));
      const rest = [revoke(grp('h-b')).then((r) => r), revoke(grp('h-c')).then((r) => r)];
      await eventually(async () => expect(submitted).toHaveBeenCalledTimes(3));
      internals.startLane(); // as when the first transaction is found slow
      await eventually(async () => expect(await lockWaiters()).toBe(2));
      await new Promise((resolve) => setTimeout(resolve, 700));
      await releaseHead();
      expect((await Promise.all([first, ...rest])).map((answer) => answer.status)).toEqual([202, 202, 202]);
      expect(together.mock.calls.map((call) => call[1].length)).toEqual([1, 2]);
    } finally {
      internals.batchLockTimeoutMs = lockTimeout;
      together.mockRestore();
      submitted.mockRestore();
      await releaseHead();
    }
  });
});
