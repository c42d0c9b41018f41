import { Logger } from '@nestjs/common';
import { CustomTransportStrategy, Server } from '@nestjs/microservices';
import { decodeMessage, Topics } from '@portcullis/contracts';
import type { Consumer, EachMessagePayload, Kafka } from 'kafkajs';
import { isObservable, lastValueFrom } from 'rxjs';
import type { z } from 'zod';
import { ReliableProducer } from '../reliable-producer';
import { CONTRACT_EXTRA } from './kafka-event.decorator';

export interface KafkaEventServerOptions {
  kafka: Kafka;
  groupId: string;
  /** Where to start when the group has no committed offset yet. */
  fromBeginning?: boolean;
  /** How many partitions are processed at once (messages of one partition stay in order). */
  partitionsConsumedConcurrently?: number;
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
 */
export class KafkaEventServer extends Server implements CustomTransportStrategy {
  private readonly log = new Logger(KafkaEventServer.name);
  private consumer?: Consumer;
  private deadLetters?: ReliableProducer;
  /** Next offset to commit per topic-partition: only offsets whose handler succeeded. */
  private readonly handled = new Map<string, { topic: string; partition: number; offset: string }>();
  private commitTimer?: NodeJS.Timeout;

  constructor(private readonly options: KafkaEventServerOptions) {
    super();
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      const topics = [...this.messageHandlers.keys()];
      this.deadLetters = new ReliableProducer(this.options.kafka);
      this.consumer = this.options.kafka.consumer({
        groupId: this.options.groupId,
        allowAutoTopicCreation: false,
        sessionTimeout: 30_000,
        heartbeatInterval: 3_000,
        // An idle fetch returns after this long; it bounds how long a shutdown waits for the consumer.
        maxWaitTimeInMs: 1_000,
        retry: { initialRetryTime: 300, retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
      });
      await this.consumer.connect();
      await this.consumer.subscribe({ topics, fromBeginning: this.options.fromBeginning ?? true });
      await this.consumer.run({
        // kafkajs' autoCommit sends an OffsetCommit after every batch and waits for it before the next one
        // (on Kafka 4 at least group.coordinator.append.linger.ms = 5 ms). Handlers are idempotent
        // (message ids), so offsets of handled messages are committed in the background instead.
        autoCommit: false,
        partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 6,
        eachMessage: async (payload) => {
          await this.handleMessage(payload);
          this.handled.set(`${payload.topic}/${payload.partition}`, {
            topic: payload.topic,
            partition: payload.partition,
            offset: (BigInt(payload.message.offset) + 1n).toString(),
          });
        },
      });
      this.commitTimer = setInterval(() => void this.commitHandled(), 1_000);
      this.commitTimer.unref();
      callback();
    } catch (error) {
      callback(error);
    }
  }

  private async handleMessage({ topic, partition, message }: EachMessagePayload): Promise<void> {
    const handler = this.getHandlerByPattern(topic);
    if (!handler) return;
    const contract = handler.extras?.[CONTRACT_EXTRA] as z.ZodType | undefined;
    const context: KafkaEventContext = {
      topic,
      partition,
      offset: message.offset,
      key: message.key?.toString('utf8') ?? null,
      timestamp: message.timestamp,
      value: message.value,
    };
    let data: unknown;
    try {
      data = contract ? decodeMessage(contract, message.value) : JSON.parse(message.value?.toString('utf8') ?? 'null');
    } catch (error) {
      await this.deadLetter(context, message.value, error);
      return;
    }
    try {
      const result = await handler(data, context);
      if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
    } catch (error) {
      // Rethrow so kafkajs does not commit the offset and delivers the message again after back-off.
      this.log.error(`handler for ${topic} failed at ${partition}/${message.offset}; will retry: ${describe(error)}`);
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

  private async commitHandled(): Promise<void> {
    if (!this.consumer || this.handled.size === 0) return;
    const offsets = [...this.handled.values()];
    this.handled.clear();
    try {
      await this.consumer.commitOffsets(offsets);
    } catch (error) {
      // A rebalance or a broker restart: the new owner replays from the last commit (idempotent handlers).
      this.log.warn(`could not commit offsets: ${describe(error)}`);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.commitTimer);
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
