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
  private readonly producer: Producer;
  private connecting?: Promise<void>;

  constructor(kafka: Kafka, options: { transactionalId?: string } = {}) {
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      transactionalId: options.transactionalId,
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
    await this.producer.sendBatch({
      acks: -1,
      compression: CompressionTypes.None,
      topicMessages: [...byTopic.entries()].map(([topic, topicMessages]) => ({ topic, messages: topicMessages })),
    });
  }

  /** Always asks kafkajs to disconnect: a failed connect can leave broker connections open. */
  async disconnect(): Promise<void> {
    this.connecting = undefined;
    await this.producer.disconnect();
  }
}
