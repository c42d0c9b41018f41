import {
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  AdapterHeartbeatV1Schema,
  encodeMessage,
  Topics,
  type AccessAcknowledgedV1,
  type AccessDriftDetectedV1,
  type AdapterHeartbeatV1,
} from '@portcullis/contracts';
import type { ReliableProducer } from '@portcullis/kafka';
import type { AdapterEventPublisher } from './adapter-event.publisher';

/**
 * Publishes acknowledgements and drift reports (both on `Topics.acknowledgements`, key: system id, so they
 * stay in order per system) and heartbeats (key: adapter id) through an idempotent acks=all producer;
 * every message is validated against its contract before it leaves.
 */
export class KafkaAdapterEventPublisher implements AdapterEventPublisher {
  constructor(private readonly producer: ReliableProducer) {}

  async publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.acknowledgements,
        key: message.data.systemId,
        value: encodeMessage(AccessAcknowledgedV1Schema, message),
      },
    ]);
  }

  async publishDrift(message: AccessDriftDetectedV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.acknowledgements,
        key: message.data.systemId,
        value: encodeMessage(AccessDriftDetectedV1Schema, message),
      },
    ]);
  }

  async publishHeartbeat(message: AdapterHeartbeatV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.adapterHeartbeats,
        key: message.data.adapterId,
        value: encodeMessage(AdapterHeartbeatV1Schema, message),
      },
    ]);
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
