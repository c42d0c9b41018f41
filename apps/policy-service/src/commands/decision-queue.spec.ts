import type { DataSource } from 'typeorm';
import type { AuditLog } from '../audit/audit-log.service';
import type { PolicyServiceConfig } from '../config/policy-service.config';
import type { SystemAccessMessageFactory } from '../desired-state/system-access-message.factory';
import type { CommandsService } from './commands.service';
import { GroupDecisionsService } from './group-decisions.service';

/** A queued decision as the service's queue holds it (only what these specs look at). */
interface Item {
  groupId: string;
  solo: boolean;
  request: { kind: 'decide'; decision: { groupId: string; reason: string } };
}

/** The queue's private parts, driven directly: the transaction and its judging are scripted here. */
interface Queue {
  submit(request: Item['request']): Promise<{ recorded?: { commandId: string } }>;
  decideTogether(manager: unknown, batch: readonly Item[]): Promise<{ deferred: Item[]; answers: { item: Item; answer: unknown }[] }>;
  slowTransactionMs: number;
  lanes: number;
  slowLanes: number;
  busyGroups: Set<string>;
  waiting: Item[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A random source that repeats: the same seed, the same run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/**
 * The group commit's queue under a storm of decisions, with transactions that are slow at random, fail at
 * random before or at COMMIT (failing merged batches are recorded one by one) and defer decisions as the
 * real judging does. What must hold whatever happens: every decision answered exactly once, the decisions
 * of one group recorded in the order they came, no group in two transactions at once, never more
 * transactions than allowed, and nothing left behind.
 */
describe('decision queue (group commit): lanes, order and answers under random delays and failures', () => {
  it.each([1, 2, 3, 4, 5])('holds its invariants (seed %i)', async (seed) => {
    const next = random(seed);
    const inTransaction = new Set<string>();
    let running = 0;
    let mostRunning = 0;
    const recorded = new Map<string, string[]>();
    const dataSource = {
      transaction: async <T>(work: (manager: unknown) => Promise<T>): Promise<T> => {
        running += 1;
        mostRunning = Math.max(mostRunning, running);
        try {
          const result = await work({ query: async () => [] });
          await sleep(next() * 3); // COMMIT
          return result;
        } finally {
          running -= 1;
        }
      },
    } as unknown as DataSource;
    const service = new GroupDecisionsService(
      dataSource,
      {} as AuditLog,
      {} as CommandsService,
      { restoreRequestTtlSeconds: 3600, acknowledgementDeadlineSeconds: 60 } as PolicyServiceConfig,
      {} as SystemAccessMessageFactory,
    );
    const queue = service as unknown as Queue;
    queue.slowTransactionMs = 4;
    jest.spyOn(queue, 'decideTogether').mockImplementation(async (_manager, batch) => {
      for (const item of batch) {
        expect(inTransaction.has(item.groupId)).toBe(false);
        if (item.solo) expect(batch).toHaveLength(1);
      }
      const groups = new Set(batch.map((item) => item.groupId));
      groups.forEach((group) => inTransaction.add(group));
      try {
        // Sometimes a long lock wait (another lane should start), sometimes quick.
        await sleep(next() < 0.1 ? 15 : next() * 3);
        if (batch.length > 1 && next() < 0.15) throw Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' });
        // As the real judging: a second decision about a group decided in the batch waits for the next one.
        const decided = new Set<string>();
        const deferred: Item[] = [];
        const answers: { item: Item; answer: unknown }[] = [];
        const done: [string, string][] = [];
        for (const item of batch) {
          if (decided.has(item.groupId)) {
            deferred.push(item);
            continue;
          }
          decided.add(item.groupId);
          done.push([item.groupId, item.request.decision.reason]);
          answers.push({ item, answer: { recorded: { commandId: item.request.decision.reason } } });
        }
        // Recorded only when the transaction commits (the fake COMMIT cannot fail).
        for (const [group, reason] of done) recorded.set(group, [...(recorded.get(group) ?? []), reason]);
        return { deferred, answers };
      } finally {
        groups.forEach((group) => inTransaction.delete(group));
      }
    });

    const groups = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    const sent = new Map<string, string[]>();
    const answered = new Map<string, number>();
    const pending: Promise<void>[] = [];
    for (let n = 0; n < 300; n += 1) {
      const groupId = groups[Math.floor(next() * (n % 50 < 25 ? 2 : groups.length))]; // bursts on two groups
      const reason = `${groupId}-${n}`;
      sent.set(groupId, [...(sent.get(groupId) ?? []), reason]);
      pending.push(
        queue.submit({ kind: 'decide', decision: { groupId, reason } }).then((answer) => {
          expect(answer.recorded?.commandId).toBe(reason);
          answered.set(reason, (answered.get(reason) ?? 0) + 1);
        }),
      );
      if (next() < 0.3) await sleep(next() * 2);
    }
    await Promise.all(pending);

    expect([...answered.values()].every((count) => count === 1)).toBe(true);
    expect(answered.size).toBe(300);
    for (const group of groups) expect(recorded.get(group) ?? []).toEqual(sent.get(group) ?? []);
    expect(mostRunning).toBeLessThanOrEqual(6);
    expect(mostRunning).toBeGreaterThan(1); // slow transactions did let others start
    await sleep(5);
    expect({ lanes: queue.lanes, slowLanes: queue.slowLanes, busy: queue.busyGroups.size, waiting: queue.waiting.length }).toEqual({
      lanes: 0,
      slowLanes: 0,
      busy: 0,
      waiting: 0,
    });
  });
});
