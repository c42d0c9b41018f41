import {
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  AdapterHeartbeatV1Schema,
  encodeSignedMessage,
  SecurityAlertV1Schema,
  Topics,
  type AccessAcknowledgedV1,
  type AccessDriftDetectedV1,
  type AdapterHeartbeatV1,
  type SecurityAlertV1,
  type SigningKey,
} from '@portcullis/contracts';
import type { OutgoingMessage, ReliableProducer } from '@portcullis/kafka';
import type { AdapterEventPublisher } from './adapter-event.publisher';

/** The most messages one produce request carries (well inside the broker's 1 MB batch limit). */
const MAX_MESSAGES_PER_REQUEST = 200;

interface Pending {
  message: OutgoingMessage;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Publishes acknowledgements, drift reports and security alerts (on `Topics.acknowledgements`, key:
 * system id, so they stay in order per system) and heartbeats (key: adapter id) through an idempotent
 * acks=all producer; every message is validated against its contract and signed with the adapter's key
 * before it leaves.
 *
 * Messages published in the same turn of the event loop — the acknowledgements of many systems decided
 * together — leave in one produce request (a linger of one tick, without a timer): each call still
 * resolves only once the broker holds its message, and messages keep their order.
 */
export class KafkaAdapterEventPublisher implements AdapterEventPublisher {
  private queue: Pending[] = [];
  private flushScheduled = false;

  constructor(
    private readonly producer: ReliableProducer,
    private readonly signingKey: SigningKey,
  ) {}

  async publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void> {
    return this.enqueue({
      topic: Topics.acknowledgements,
      key: message.data.systemId,
      value: encodeSignedMessage(AccessAcknowledgedV1Schema, message, this.signingKey),
    });
  }

  async publishDrift(message: AccessDriftDetectedV1): Promise<void> {
    return this.enqueue({
      topic: Topics.acknowledgements,
      key: message.data.systemId,
      value: encodeSignedMessage(AccessDriftDetectedV1Schema, message, this.signingKey),
    });
  }

  async publishSecurityAlert(message: SecurityAlertV1): Promise<void> {
    return this.enqueue({
      topic: Topics.acknowledgements,
      key: message.data.systemId,
      value: encodeSignedMessage(SecurityAlertV1Schema, message, this.signingKey),
    });
  }

  async publishHeartbeat(message: AdapterHeartbeatV1): Promise<void> {
    return this.enqueue({
      topic: Topics.adapterHeartbeats,
      key: message.data.adapterId,
      value: encodeSignedMessage(AdapterHeartbeatV1Schema, message, this.signingKey),
    });
  }

  async close(): Promise<void> {
    await this.flush();
    await this.producer.disconnect();
  }

  private enqueue(message: OutgoingMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false;
    const queued = this.queue;
    if (queued.length === 0) return;
    this.queue = [];
    // In order, a request at a time; a request that fails fails only its own messages.
    for (let start = 0; start < queued.length; start += MAX_MESSAGES_PER_REQUEST) {
      const chunk = queued.slice(start, start + MAX_MESSAGES_PER_REQUEST);
      try {
        await this.producer.send(chunk.map((pending) => pending.message));
        for (const pending of chunk) pending.resolve();
      } catch (error) {
        for (const pending of chunk) pending.reject(error);
      }
    }
  }
}
