import { Logger } from '@nestjs/common';
import { CustomTransportStrategy, Server } from '@nestjs/microservices';
import { decodeMessage, Topics } from '@portcullis/contracts';
import type { Batch, Consumer, Kafka, KafkaMessage } from 'kafkajs';
import { isObservable, lastValueFrom } from 'rxjs';
import type { z } from 'zod';
import { replaceWhenAbandoned } from '../abandoned-consumer';
import { ReliableProducer } from '../reliable-producer';
import { BATCH_EXTRA, CONTRACT_EXTRA } from './kafka-event.decorator';

export interface KafkaEventServerOptions {
  kafka: Kafka;
  groupId: string;
  /** Where to start when the group has no committed offset yet. */
  fromBeginning?: boolean;
  /** How many partitions are processed at once (messages of one partition stay in order). */
  partitionsConsumedConcurrently?: number;
  /** The most messages a batch handler gets in one call. Default 500. */
  maxBatchSize?: number;
}

export interface KafkaEventContext {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  timestamp: string;
  /** The record's bytes as they arrived, for checks the contract cannot make (signatures cover them). */
  value: Buffer | null;
}

/** One valid message, as a batch handler (`@KafkaEvent(topic, contract, { batch: true })`) gets it. */
export interface KafkaEventBatchItem<T> {
  data: T;
  context: KafkaEventContext;
}

/**
 * A Nest microservice transport for Kafka event handlers (`@KafkaEvent(topic, contract)`), built on
 * our kafkajs wrapper because Nest's built-in Kafka transport does not fit an audit trail that must
 * lose nothing:
 *
 * - it validates each message against its contract where it arrives; a malformed message is parked on
 *   the dead-letter topic with the reason and its offset is committed, so it cannot stall a partition;
 * - it awaits the handler and commits the offset only after the handler succeeded. A handler that
 *   throws (database down, say) makes kafkajs retry the same message with back-off; nothing is skipped.
 *   (Nest's built-in transport logs such an error and moves on.)
 * - a handler may take a whole fetched batch at once (`{ batch: true }`), so it can record many
 *   messages in one database transaction instead of one transaction per message.
 */
export class KafkaEventServer extends Server implements CustomTransportStrategy {
  private readonly log = new Logger(KafkaEventServer.name);
  private consumer?: Consumer;
  private deadLetters?: ReliableProducer;
  /** Next offset to commit per topic-partition: only offsets whose handler succeeded. */
  private readonly handled = new Map<string, { topic: string; partition: number; offset: string }>();
  /** The partitions this member owns since the last rebalance (`topic/partition`); unknown before the first. */
  private assigned?: Set<string>;
  /** The commit in flight: one at a time, so an older offset never lands after a newer one. */
  private committing?: Promise<void>;
  private commitTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: KafkaEventServerOptions) {
    super();
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      this.deadLetters = new ReliableProducer(this.options.kafka);
      await this.startConsumer();
      this.commitTimer = setInterval(() => void this.commitHandled(), 1_000);
      this.commitTimer.unref();
      callback();
    } catch (error) {
      callback(error);
    }
  }

  /** A consumer of the handlers' topics, consuming; again after kafkajs gave up on the one before. */
  private async startConsumer(): Promise<void> {
    const topics = [...this.messageHandlers.keys()];
    this.consumer = this.options.kafka.consumer({
      groupId: this.options.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      // An idle fetch returns after this long; it bounds how long a shutdown waits for the consumer.
      maxWaitTimeInMs: 1_000,
      retry: { initialRetryTime: 300, retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
    });
    // Offsets handled before a rebalance are committed only for the partitions this member still owns:
    // the new owner of the others commits its own (and replays from the last commit; handlers are idempotent).
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      this.assigned = new Set(
        Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((partition) => `${topic}/${partition}`)),
      );
      for (const key of this.handled.keys()) if (!this.assigned.has(key)) this.handled.delete(key);
    });
    // Without a consumer no acknowledgement or heartbeat would be recorded again, for the life of the process.
    replaceWhenAbandoned(this.consumer, () => this.startConsumer(), {
      isStopped: () => this.closed,
      onAbandoned: (error) => this.log.error(`kafkajs gave up on the consumer of ${topics.join(', ')} (${describe(error)}); starting a new one`),
      onReplaceFailed: (error, attempt) => this.log.error(`could not start a new consumer (attempt ${attempt}): ${describe(error)}; trying again`),
    });
    await this.consumer.connect();
    await this.consumer.subscribe({ topics, fromBeginning: this.options.fromBeginning ?? true });
    await this.consumer.run({
      // kafkajs' autoCommit sends an OffsetCommit after every batch and waits for it before the next one
      // (on Kafka 4 at least group.coordinator.append.linger.ms = 5 ms). Handlers are idempotent
      // (message ids), so offsets of handled messages are committed in the background instead.
      autoCommit: false,
      partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 6,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        const handler = this.getHandlerByPattern(batch.topic);
        const batched = handler?.extras?.[BATCH_EXTRA] === true;
        const size = batched ? (this.options.maxBatchSize ?? 500) : 1;
        for (let start = 0; start < batch.messages.length; start += size) {
          if (!isRunning() || isStale()) return;
          const slice = batch.messages.slice(start, start + size);
          await this.handleMessages(batch, slice);
          const last = slice[slice.length - 1].offset;
          resolveOffset(last);
          this.handled.set(`${batch.topic}/${batch.partition}`, {
            topic: batch.topic,
            partition: batch.partition,
            offset: (BigInt(last) + 1n).toString(),
          });
          await heartbeat().catch(() => undefined); // best effort: the next fetch rejoins if the group moved on
        }
      },
    });
  }

  /**
   * Validates each message (dead-lettering those that break the contract), then hands the valid ones to
   * the handler: one by one, or all at once for a batch handler. Throws if the handler failed, so kafkajs
   * delivers the messages again from the last resolved offset after back-off.
   */
  private async handleMessages(batch: Pick<Batch, 'topic' | 'partition'>, messages: KafkaMessage[]): Promise<void> {
    const { topic, partition } = batch;
    const handler = this.getHandlerByPattern(topic);
    if (!handler) return;
    const contract = handler.extras?.[CONTRACT_EXTRA] as z.ZodType | undefined;
    const valid: KafkaEventBatchItem<unknown>[] = [];
    for (const message of messages) {
      const context: KafkaEventContext = {
        topic,
        partition,
        offset: message.offset,
        key: message.key?.toString('utf8') ?? null,
        timestamp: message.timestamp,
        value: message.value,
      };
      try {
        const data = contract ? decodeMessage(contract, message.value) : JSON.parse(message.value?.toString('utf8') ?? 'null');
        valid.push({ data, context });
      } catch (error) {
        await this.deadLetter(context, message.value, error);
      }
    }
    if (valid.length === 0) return;
    const invoke = async (data: unknown, context: unknown) => {
      const result = await handler(data, context);
      if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
    };
    try {
      if (handler.extras?.[BATCH_EXTRA] === true) {
        await invoke(valid, { topic, partition, offset: valid[0].context.offset });
      } else {
        for (const item of valid) await invoke(item.data, item.context);
      }
    } catch (error) {
      // Rethrow so kafkajs does not commit the offset and delivers the messages again after back-off.
      this.log.error(`handler for ${topic} failed at ${partition}/${valid[0].context.offset}; will retry: ${describe(error)}`);
      throw error;
    }
  }

  private async deadLetter(context: KafkaEventContext, value: Buffer | null, error: unknown): Promise<void> {
    this.log.warn(`rejected message ${context.topic} ${context.partition}/${context.offset}: ${describe(error)}`);
    await this.deadLetters!.send([
      {
        topic: Topics.deadLetters,
        key: context.topic,
        value: JSON.stringify({
          sourceTopic: context.topic,
          partition: context.partition,
          offset: context.offset,
          key: context.key,
          reason: describe(error),
          rejectedAt: new Date().toISOString(),
          rejectedBy: this.options.groupId,
          value: value?.toString('base64') ?? null,
        }),
      },
    ]);
  }

  on(): never {
    throw new Error('KafkaEventServer does not expose transport events');
  }

  unwrap<T>(): T {
    return this.consumer as T;
  }

  /** Commits the offsets handled since the last commit; joins the commit in flight instead of racing it. */
  private commitHandled(): Promise<void> {
    this.committing ??= this.commitOnce().finally(() => {
      this.committing = undefined;
    });
    return this.committing;
  }

  private async commitOnce(): Promise<void> {
    if (!this.consumer || this.handled.size === 0) return;
    const offsets = [...this.handled.entries()];
    this.handled.clear();
    try {
      await this.consumer.commitOffsets(offsets.map(([, offset]) => offset));
    } catch (error) {
      // A broker restart, say: try again with the next commit — unless a newer offset was handled meanwhile,
      // or a rebalance gave the partition to another member (which commits its own).
      this.log.warn(`could not commit offsets: ${describe(error)}`);
      for (const [key, offset] of offsets) {
        if (!this.handled.has(key) && (this.assigned === undefined || this.assigned.has(key))) this.handled.set(key, offset);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.commitTimer);
    await this.committing; // the commit in flight, then one more for what was handled meanwhile
    await this.commitHandled();
    await this.consumer?.disconnect();
    await this.deadLetters?.disconnect();
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (error && typeof error === 'object' && 'message' in error) return String((error as { message: unknown }).message);
  return String(error);
}
