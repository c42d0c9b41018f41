import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Consumer, type Message, type Producer } from 'kafkajs';
import { ensureTopics } from '../../libs/kafka/src/topic-admin';
import { partitionForRoute } from '../../libs/kafka/src/partition-routing';
import { waitUntilQuiet } from './proc-stats';
import { chunk } from './adapter-workers';
import type { BenchOptions } from './bench-options';
import { BASELINE_GROUP_PREFIX, BASELINE_TOPIC_PREFIX, type BenchStack } from './bench-stack';
import type { Fleet } from './fleet';
import type { ScenarioResult } from './report';
import { wallClockMs } from './stats';
import { kafkajsSsl, type KafkaConnection } from './worker-protocol';

/** About the size of a `system-access.changed` envelope, so both paths move similar bytes. */
const PADDING = 'x'.repeat(560);

type Waiting = { need: number; got: Set<string>; resolve: (at: number) => void };

/**
 * The centre of the raw-Kafka baseline: sends one request and collects the N replies that the N
 * consumers (in N consumer groups, in the adapter workers) produce. No framework, no validation, no
 * database, no durable state: the floor a Kafka round trip to N parties and back can reach.
 */
export class KafkaBaselineCentre {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly consumer: Consumer;
  private readonly waiting = new Map<string, Waiting>();

  /** Set with `coalesceSends`: one produce request at a time, what comes meanwhile in the next. */
  private readonly coalescing?: CoalescingSender;

  constructor(
    connection: KafkaConnection,
    private readonly requestTopic: string,
    private readonly replyTopic: string,
    groupId: string,
    options: {
      /**
       * Under load, send as a raw client that batches would: while one produce request is under way,
       * rounds that start wait and go together in the next (the throughput floor). A round alone is sent
       * at once either way.
       */
      coalesceSends?: boolean;
    } = {},
  ) {
    this.kafka = new Kafka({
      clientId: 'bench-baseline-centre',
      brokers: connection.brokers,
      sasl: connection.sasl,
      ssl: kafkajsSsl(connection),
      logLevel: logLevel.ERROR,
    });
    this.producer = this.kafka.producer();
    this.consumer = this.kafka.consumer({ groupId, maxWaitTimeInMs: 1_000 });
    if (options.coalesceSends) this.coalescing = new CoalescingSender((messages) => this.producer.send({ topic: this.requestTopic, acks: -1, messages }));
  }

  /** Creates the topics through `brokers`, the loopback tooling listener (setup, as for Portcullis' own topics). */
  static async createTopics(brokers: string[], topics: string[], partitions: number): Promise<void> {
    const kafka = new Kafka({ clientId: 'bench-baseline-admin', brokers, logLevel: logLevel.ERROR });
    await ensureTopics(kafka, topics.map((topic) => ({ topic, numPartitions: partitions })));
  }

  async start(): Promise<void> {
    await this.producer.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.replyTopic, fromBeginning: false });
    const joined = new Promise<void>((resolve) => this.consumer.on(this.consumer.events.GROUP_JOIN, () => resolve()));
    await this.consumer.run({
      autoCommit: false, // see adapter-worker.ts: per-batch commits are not part of the floor
      eachMessage: async ({ message }) => {
        const at = wallClockMs();
        const reply = JSON.parse(message.value?.toString('utf8') ?? '{}') as { sampleId: string; consumerId: string; item?: string };
        const waiting = this.waiting.get(reply.sampleId);
        if (!waiting) return;
        waiting.got.add(reply.item === undefined ? reply.consumerId : `${reply.consumerId}/${reply.item}`);
        if (waiting.got.size === waiting.need) {
          this.waiting.delete(reply.sampleId);
          waiting.resolve(at);
        }
      },
    });
    await joined;
  }

  /** One round: request sent → all `consumers` replies received. Returns ms, or rejects after `timeoutMs`. */
  round(consumers: number, timeoutMs = 30_000): Promise<number> {
    return this.exchange(consumers, timeoutMs, (sampleId) => {
      const message = { key: sampleId, value: JSON.stringify({ sampleId, sentAt: new Date().toISOString(), padding: PADDING }) };
      return this.coalescing ? this.coalescing.send(message) : this.producer.send({ topic: this.requestTopic, acks: -1, messages: [message] });
    });
  }

  /**
   * One bulk round (the scale baseline): a request per item, keyed with and routed to the partition of the
   * consumer that serves it, sent in batches of `batchSize` as fast as the producer takes them → every
   * item's reply received. Returns ms from the first send.
   */
  bulkRound(items: { item: string; consumer: string }[], partitions: number, timeoutMs = 600_000, batchSize = 1_000): Promise<number> {
    return this.exchange(items.length, timeoutMs, async (sampleId) => {
      const sentAt = new Date().toISOString();
      const sends: Promise<unknown>[] = [];
      for (let start = 0; start < items.length; start += batchSize) {
        const messages = items.slice(start, start + batchSize).map(({ item, consumer }) => ({
          key: consumer,
          partition: partitionForRoute(consumer, partitions),
          value: JSON.stringify({ sampleId, item, sentAt, padding: PADDING }),
        }));
        sends.push(this.producer.send({ topic: this.requestTopic, acks: -1, messages }));
      }
      await Promise.all(sends);
    });
  }

  /**
   * Sends what `send` sends under a new sample id and waits for `replies` distinct replies to it: ms from
   * just before the send to the last reply. Rejects, without leaving a waiter or a timer behind, when the
   * send fails, or when `timeoutMs` passes before the send has settled and every reply has come.
   */
  private async exchange(replies: number, timeoutMs: number, send: (sampleId: string) => Promise<unknown>): Promise<number> {
    const sampleId = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`baseline round ${sampleId}: not all ${replies} replies within ${timeoutMs} ms`)), timeoutMs);
    });
    const done = new Promise<number>((resolve) => this.waiting.set(sampleId, { need: replies, got: new Set(), resolve }));
    const sentAt = wallClockMs();
    // The send and every reply, or the timeout: it bounds both (a send that never settles, or replies that never come).
    const round = Promise.all([send(sampleId), done]);
    // Whichever loses the race may still fail later: that must not be an unhandled rejection.
    round.catch(() => undefined);
    timeout.catch(() => undefined);
    try {
      const [, lastReplyAt] = await Promise.race([round, timeout]);
      return lastReplyAt - sentAt;
    } finally {
      clearTimeout(timer);
      this.waiting.delete(sampleId);
    }
  }

  /** Bulk rounds of one item per consumer until one gets every reply: every routed consumer has its partition. */
  async warmUpBulk(consumers: string[], partitions: number, attempts = 20): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.bulkRound(consumers.map((consumer) => ({ item: 'warm-up', consumer })), partitions, 3_000);
        return;
      } catch (error) {
        if (attempt >= attempts) throw error;
      }
    }
  }

  /** Rounds until one gets every reply: all consumers have joined and resolved their offsets. */
  async warmUp(consumers: number, attempts = 20): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.round(consumers, 3_000);
        return;
      } catch (error) {
        if (attempt >= attempts) throw error;
      }
    }
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect();
    await this.producer.disconnect();
  }
}

/** A raw-Kafka floor set up in a fleet's worker processes: its centre, and how to take it all down. */
export interface Floor {
  centre: KafkaBaselineCentre;
  stop(): Promise<void>;
}

/**
 * Sets up a raw-Kafka floor: its request and reply topics (`bench.baseline-request.<name>`, `…reply.<name>`),
 * one plain kafkajs consumer per id (own consumer group) in the fleet's workers, spread over them as the
 * adapters are, and the centre, started. On failure, what was started is stopped again.
 */
export async function startFloor(
  stack: BenchStack,
  options: BenchOptions,
  fleet: Fleet,
  params: { name: string; consumerIds: string[]; batchReplies?: boolean; routed?: boolean; coalesceSends?: boolean },
): Promise<Floor> {
  const requestTopic = `${BASELINE_TOPIC_PREFIX}request.${params.name}`;
  const replyTopic = `${BASELINE_TOPIC_PREFIX}reply.${params.name}`;
  await KafkaBaselineCentre.createTopics(stack.brokers, [requestTopic, replyTopic], stack.partitions);
  const runTag = `${process.pid}-${Date.now()}`;
  const centre = new KafkaBaselineCentre(stack.kafkaAs('baseline'), requestTopic, replyTopic, `${BASELINE_GROUP_PREFIX}-centre.${runTag}.${params.name}`, {
    coalesceSends: params.coalesceSends,
  });
  const stop = async () => {
    await centre.stop().catch(() => undefined);
    await Promise.all(fleet.workers.map((worker) => worker.stopBaseline().catch(() => undefined)));
  };
  try {
    await Promise.all(
      chunk(params.consumerIds, options.instancesPerWorker).map((ids, index) =>
        fleet.workers[index].startBaseline({
          kafka: stack.kafkaAs('baseline'),
          requestTopic,
          replyTopic,
          consumerIds: ids,
          groupPrefix: `${BASELINE_GROUP_PREFIX}.${runTag}`,
          batchReplies: params.batchReplies,
          routed: params.routed,
        }),
      ),
    );
    await centre.start();
    return { centre, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Natural batching, as a raw producer under load would do it: one request in flight; messages that come
 * while it is under way wait and go together in the next. No added delay: a message alone goes at once.
 */
export class CoalescingSender {
  private waiting: { message: Message; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private sending = false;

  constructor(private readonly sendBatch: (messages: Message[]) => Promise<unknown>) {}

  send(message: Message): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ message, resolve, reject });
      if (!this.sending) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.sending = true;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0);
      try {
        await this.sendBatch(batch.map((entry) => entry.message));
        for (const entry of batch) entry.resolve();
      } catch (error) {
        for (const entry of batch) entry.reject(error);
      }
    }
    this.sending = false;
  }
}

/** The kinds of process a raw-Kafka floor runs in: its CPU is theirs (the policy service and its database take no part). */
const FLOOR_KINDS = new Set(['adapter_workers', 'kafka_broker', 'bench_client']);

/** CPU by kind, reduced to the processes a raw-Kafka floor runs in. */
export function floorCpu(used: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(used).filter(([kind]) => FLOOR_KINDS.has(kind)));
}

/**
 * Runs a raw-Kafka floor after a Portcullis measurement, in the same worker processes: first stops the
 * workers' adapter instances and waits until the run's processes are quiet, so the floor neither shares
 * the machine with them nor counts their CPU. A floor that fails is logged and returns its error, so the
 * Portcullis figures already taken are still reported.
 */
export async function runFloor(name: string, stack: BenchStack, fleet: Fleet, measure: () => Promise<ScenarioResult>): Promise<ScenarioResult | { error: string }> {
  try {
    await Promise.all(fleet.workers.map((worker) => worker.stopAdapters()));
    await waitUntilQuiet(() => [...fleet.workers.map((worker) => worker.pid), ...stack.serverPids()], { timeoutMs: 60_000 });
    return await measure();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`[bench] ${name} failed; reporting without it: ${message}`);
    return { error: message };
  }
}
