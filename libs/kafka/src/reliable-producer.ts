import { CompressionTypes, type Kafka, type Message, type Producer } from 'kafkajs';

export interface OutgoingMessage {
  topic: string;
  key: string;
  value: string;
  headers?: Record<string, string>;
}

/**
 * A producer that resolves only when every partition leader has acknowledged the write (acks=all),
 * with idempotence on so that its own retries never duplicate or reorder a key's messages.
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
    const byTopic = new Map<string, Message[]>();
    for (const message of messages) {
      const list = byTopic.get(message.topic) ?? [];
      list.push({ key: message.key, value: message.value, headers: message.headers });
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
