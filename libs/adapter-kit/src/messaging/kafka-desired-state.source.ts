import { Topics } from '@portcullis/contracts';
import { replaceWhenAbandoned, singleRouteAssigner } from '@portcullis/kafka';
import type { Consumer, Kafka } from 'kafkajs';
import type { AdapterLogger } from '../logging/adapter-logger';
import { describeError } from '../logging/describe-error';
import type { DesiredStateHandler, DesiredStateSource } from './desired-state.source';

const HEARTBEAT_WHILE_HANDLING_MS = 1_000;

type PartitionBounds = ReadonlyMap<number, { low: bigint; high: bigint }>;

/**
 * Consumes `Topics.systemAccess` in the group `portcullis-adapter.<adapterId>`, and of it only the partition
 * the policy service routes this adapter's decisions to (`singleRouteAssigner`; see `Topics.systemAccess`):
 * the other partitions hold other adapters' systems. A second instance of the same adapter joins the group
 * and gets nothing (an error says so) until the first leaves: one instance per adapter id.
 *
 * It never commits an offset, so every start (and every rebalance) replays the partition from its
 * beginning: an adapter that was down or lost its state catches up with the current decisions, not only
 * new ones. Repeats are cheap: the runtime ignores generations it already holds.
 *
 * Catch-up: records below where the partition ended when it was assigned to this instance (read again at
 * every assignment: an instance may wait idle for hours before it gets the route) are marked `catchUp`.
 * Once every one of them has been handled, `caughtUp` is called, once — at once if the partition was empty.
 * On a compacted topic a partition with records below its end always has a readable one: the newest
 * record is in the active segment, which compaction never cleans.
 */
export class KafkaDesiredStateSource implements DesiredStateSource {
  private consumer?: Consumer;
  private connected = false;
  private stopped = false;
  /** When this instance started: the group gives the route to the instance running longest. */
  private readonly startedAt = Date.now();

  constructor(
    private readonly kafka: Kafka,
    private readonly adapterId: string,
    private readonly logger: AdapterLogger,
  ) {}

  /** The adapter's consumer group. */
  get groupId(): string {
    return `portcullis-adapter.${this.adapterId}`;
  }

  async start(handler: DesiredStateHandler, serves: (key: string) => boolean = () => true, caughtUp: () => void = () => undefined): Promise<void> {
    let signalled = false;
    const signalCaughtUp = () => {
      if (signalled) return;
      signalled = true;
      caughtUp();
    };
    // Where the partitions began and ended at the last assignment (at start until the first one).
    let bounds: Promise<PartitionBounds> = this.partitionBounds();
    let lastKnown = await bounds; // fail the start, not the first batch, if the broker cannot say
    /** Fetches the bounds again; a failed fetch is fetched again later (next batch, or signalIfEmpty), not an unhandled rejection. */
    const refetchBounds = (): void => {
      bounds = this.partitionBounds();
      bounds.catch(() => undefined);
    };
    const boundsNow = async (): Promise<PartitionBounds> => {
      try {
        lastKnown = await bounds;
      } catch {
        // Catch-up ended: the last known bounds do (they only mark history). Before that, fetch once more, now.
        if (signalled) return lastKnown;
        bounds = this.partitionBounds();
        lastKnown = await bounds;
      }
      return lastKnown;
    };
    let assignment = 0;
    /**
     * Until it is known: an empty partition gives no batch to learn it from, so the check is retried (one loop,
     * for the latest assignment; it ends with the signal, a stop, or a newer assignment).
     */
    const signalIfEmpty = (partitions: number[], of: number, attempt = 0): void => {
      const current = () => !signalled && !this.stopped && of === assignment;
      const retry = () => {
        refetchBounds();
        setTimeout(() => current() && signalIfEmpty(partitions, of, attempt + 1), Math.min(30_000, 500 * 2 ** attempt)).unref();
      };
      void bounds.then(
        (found) => {
          if (!current()) return;
          if (partitions.some((partition) => !found.has(partition))) return retry(); // not in the metadata yet
          if (partitions.every((partition) => found.get(partition)!.high <= found.get(partition)!.low)) signalCaughtUp();
        },
        () => current() && retry(),
      );
    };
    /** A new consumer in the group, consuming: at start, and after kafkajs gave up on the one before. */
    const launch = async (): Promise<void> => {
      const consumer = this.kafka.consumer({
        groupId: this.groupId,
        partitionAssigners: [singleRouteAssigner(this.adapterId, this.startedAt)],
        allowAutoTopicCreation: false,
        sessionTimeout: 10_000,
        heartbeatInterval: 1_000,
        // Bounds how long stop() waits for the fetch in flight; new records still arrive without delay.
        maxWaitTimeInMs: 1_000,
        retry: { initialRetryTime: 300, retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
      });
      this.consumer = consumer;
      consumer.on(consumer.events.GROUP_JOIN, (event) => {
        this.connected = true;
        const partitions = event.payload.memberAssignment[Topics.systemAccess] ?? [];
        assignment += 1; // ends the empty-partition check of an earlier assignment
        if (partitions.length > 0) {
          // What the partition holds now is the history this instance has to read before it enforces any of it.
          refetchBounds();
          if (!signalled) signalIfEmpty(partitions, assignment);
        } else {
          this.logger.error(
            `another instance of adapter "${this.adapterId}" holds its partition of ${Topics.systemAccess}: this instance ` +
              'receives no decisions until that one leaves. Run one instance per adapter id (each with its own state)',
            { memberId: event.payload.memberId },
          );
        }
      });
      consumer.on(consumer.events.CRASH, (event) => {
        this.connected = false;
        const { error, restart } = event.payload;
        if (restart) this.logger.warn('desired-state consumer crashed', { error: describeError(error), restart });
      });
      // Without a consumer this adapter would never receive another decision (its heartbeats would go on).
      replaceWhenAbandoned(consumer, launch, {
        isStopped: () => this.stopped,
        onAbandoned: (error) => this.logger.error('kafkajs gave up on the desired-state consumer; starting a new one', { error: describeError(error) }),
        onReplaceFailed: (error, attempt) => {
          void this.consumer?.disconnect().catch(() => undefined);
          this.logger.error('could not start a new desired-state consumer; trying again', { error: describeError(error), attempt });
        },
      });
      consumer.on(consumer.events.DISCONNECT, () => {
        this.connected = false;
      });
      await consumer.connect();
      await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: 4,
        // Batches, not one call per message: the partition is shared with the other adapters routed to it, and
        // their systems' records are skipped by key in a plain loop. Records of one system are handled in
        // order; different systems' at the same time, so that their durable saves share one group commit
        // (see LogStructuredStateStore) instead of one after the other.
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
          const waiting = setInterval(() => void heartbeat().catch(() => undefined), HEARTBEAT_WHILE_HANDLING_MS);
          const partitionBounds = await boundsNow().finally(() => clearInterval(waiting));
          const end = partitionBounds.get(batch.partition)?.high;
          // Bounds without this partition are no bounds for it (0 would make the whole history new): fetch again.
          if (end === undefined) {
            refetchBounds();
            throw new Error(`no bounds for partition ${batch.partition} of ${Topics.systemAccess} yet`);
          }
          const catchUpEnd = end;
          const bySystem = new Map<string | null, Promise<unknown>>();
          // A record without a key is judged for the system it claims, and remembered as judged there: it waits
          // for every record before it and every record after it waits for it, so that this cannot pass over a
          // record of that system in flight (or make one after it count as judged before it was). Such records
          // are refused ones (an alert each): rare.
          let barrier: Promise<unknown> = Promise.resolve();
          const handled: { offset: string; done: Promise<unknown> }[] = [];
          for (const message of batch.messages) {
            if (!isRunning() || isStale()) break;
            const key = message.key?.toString('utf8') ?? null;
            let done: Promise<unknown> = Promise.resolve();
            if (key === null || serves(key)) {
              const record = {
                key,
                value: message.value,
                partition: batch.partition,
                offset: message.offset,
                catchUp: BigInt(message.offset) < catchUpEnd,
                partitionEnd: String(catchUpEnd),
              };
              // After a failed record, the records that wait for it are not handled (they reject too).
              const before = key === null ? Promise.all([...bySystem.values(), barrier]) : Promise.all([bySystem.get(key), barrier]);
              done = before.then(() => handler(record));
              bySystem.set(key, done);
              if (key === null) barrier = done;
            }
            handled.push({ offset: message.offset, done });
          }
          // The batch stops at the first record that failed: it and everything after it come again (records of
          // other systems handled meanwhile are known by then, and skipped as judged).
          // Handling waits for fsyncs and sends (and a publish may wait out broker retries): stay in the group
          // meanwhile (kafkajs throttles heartbeats to its interval).
          const beating = setInterval(() => void heartbeat().catch(() => undefined), HEARTBEAT_WHILE_HANDLING_MS);
          const outcomes = await Promise.allSettled(handled.map((entry) => entry.done)).finally(() => clearInterval(beating));
          const failed = outcomes.findIndex((outcome) => outcome.status === 'rejected');
          const resolved = failed === -1 ? handled : handled.slice(0, failed);
          if (resolved.length > 0) resolveOffset(resolved[resolved.length - 1].offset);
          if (failed === -1 && handled.length > 0 && BigInt(handled[handled.length - 1].offset) + 1n >= catchUpEnd) signalCaughtUp();
          // Best effort: a failed heartbeat (the group rebalancing, the broker restarting) must not crash the
          // consumer — the next fetch rejoins, and records handled meanwhile are judged again harmlessly.
          await heartbeat().catch(() => undefined);
          if (failed !== -1) throw (outcomes[failed] as PromiseRejectedResult).reason;
        },
      });
      if (this.stopped) await consumer.disconnect().catch(() => undefined); // stopped while this one started
    };
    await launch();
  }

  /** Where each partition begins and ends now. */
  private async partitionBounds(): Promise<PartitionBounds> {
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      const offsets = await admin.fetchTopicOffsets(Topics.systemAccess);
      return new Map(offsets.map((entry) => [entry.partition, { low: BigInt(entry.low), high: BigInt(entry.high) }]));
    } finally {
      await admin.disconnect();
    }
  }

  async stop(): Promise<void> {
    this.connected = false;
    this.stopped = true;
    await this.consumer?.disconnect();
  }

  isConnected(): boolean {
    return this.connected;
  }
}
