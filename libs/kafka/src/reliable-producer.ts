import { Logger } from '@nestjs/common';
import { CompressionTypes, type Kafka, type Producer } from 'kafkajs';
import { RoutedPartitioner, type RoutedMessage } from './partition-routing';

export interface OutgoingMessage {
  topic: string;
  key: string;
  value: string;
  headers?: Record<string, string>;
  /** Route the record by this instead of its key (see partition-routing.ts); the key stays the record's key. */
  partitionKey?: string;
  /** An explicit partition (wins over `partitionKey`). */
  partition?: number;
}

/**
 * A producer that resolves only when every partition leader has acknowledged the write (acks=all), with
 * idempotence on so that its own retries never duplicate or reorder a key's messages. A record with a
 * `partitionKey` goes to that route's partition (`RoutedPartitioner`), any other by its key.
 */
export class ReliableProducer {
  private readonly log = new Logger(ReliableProducer.name);
  private producer: Producer;
  private connecting?: Promise<void>;

  constructor(
    private readonly kafka: Kafka,
    private readonly options: { transactionalId?: string } = {},
  ) {
    this.producer = this.createProducer();
  }

  private createProducer(): Producer {
    return this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      transactionalId: this.options.transactionalId,
      createPartitioner: RoutedPartitioner,
    });
  }

  /** Connects once; concurrent callers share the attempt, and a failed attempt is retried by the next call. */
  connect(): Promise<void> {
    this.connecting ??= this.producer.connect().catch((error: unknown) => {
      this.connecting = undefined;
      throw error;
    });
    return this.connecting;
  }

  /** Sends messages in order; messages of the same key keep their relative order. */
  async send(messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await this.connect();
    const byTopic = new Map<string, RoutedMessage[]>();
    for (const message of messages) {
      const list = byTopic.get(message.topic) ?? [];
      list.push({
        key: message.key,
        value: message.value,
        headers: message.headers,
        partitionKey: message.partitionKey,
        partition: message.partition,
      });
      byTopic.set(message.topic, list);
    }
    const producer = this.producer;
    try {
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [...byTopic.entries()].map(([topic, topicMessages]) => ({ topic, messages: topicMessages })),
      });
    } catch (error) {
      if (producer === this.producer && !this.options.transactionalId && producerStateLost(error)) await this.renew(error);
      throw error;
    }
  }

  /**
   * The broker no longer accepts this producer's sequence numbers (it lost the producer's state, or holds a
   * batch kafkajs counted as failed). kafkajs keeps sending with the same producer id and sequences, so
   * every later send would fail the same way and nothing would be published again (kafkajs#598). A new
   * producer gets a new producer id whose sequences start afresh. The caller sends the failed records
   * again (at least once; consumers are idempotent), after every earlier one, so order per key holds.
   */
  private async renew(error: unknown): Promise<void> {
    this.log.warn(`the broker refused this producer's sequence numbers (${describe(error)}); continuing with a new producer`);
    const old = this.producer;
    this.producer = this.createProducer();
    this.connecting = undefined;
    await old.disconnect().catch(() => undefined);
  }

  /** Always asks kafkajs to disconnect: a failed connect can leave broker connections open. */
  async disconnect(): Promise<void> {
    this.connecting = undefined;
    await this.producer.disconnect();
  }
}

/** Protocol errors after which an idempotent producer's id and sequence numbers are of no further use. */
const PRODUCER_STATE_LOST = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);

/** Whether `error`, or an error it wraps (kafkajs wraps what its retries gave up on), is one of those. */
export function producerStateLost(error: unknown): boolean {
  for (let cause = error as { type?: unknown; cause?: unknown } | undefined, depth = 0; cause && depth < 5; cause = cause.cause as typeof cause, depth++) {
    if (typeof cause.type === 'string' && PRODUCER_STATE_LOST.has(cause.type)) return true;
  }
  return false;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
