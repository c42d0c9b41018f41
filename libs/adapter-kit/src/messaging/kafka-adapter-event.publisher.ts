import {
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  AdapterHeartbeatV1Schema,
  encodeSignedMessage,
  SecurityAlertV1Schema,
  Topics,
  type SecurityAlertV1,
  type SigningKey,
  type AccessAcknowledgedV1,
  type AccessDriftDetectedV1,
  type AdapterHeartbeatV1,
} from '@portcullis/contracts';
import type { ReliableProducer } from '@portcullis/kafka';
import type { AdapterEventPublisher } from './adapter-event.publisher';

/**
 * Publishes acknowledgements, drift reports and security alerts (on `Topics.acknowledgements`, key:
 * system id, so they stay in order per system) and heartbeats (key: adapter id) through an idempotent
 * acks=all producer; every message is validated against its contract and signed with the adapter's key
 * before it leaves.
 */
export class KafkaAdapterEventPublisher implements AdapterEventPublisher {
  constructor(
    private readonly producer: ReliableProducer,
    private readonly signingKey: SigningKey,
  ) {}

  async publishSecurityAlert(message: SecurityAlertV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.acknowledgements,
        key: message.data.systemId,
        value: encodeSignedMessage(SecurityAlertV1Schema, message, this.signingKey),
      },
    ]);
  }

  async publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.acknowledgements,
        key: message.data.systemId,
        value: encodeSignedMessage(AccessAcknowledgedV1Schema, message, this.signingKey),
      },
    ]);
  }

  async publishDrift(message: AccessDriftDetectedV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.acknowledgements,
        key: message.data.systemId,
        value: encodeSignedMessage(AccessDriftDetectedV1Schema, message, this.signingKey),
      },
    ]);
  }

  async publishHeartbeat(message: AdapterHeartbeatV1): Promise<void> {
    await this.producer.send([
      {
        topic: Topics.adapterHeartbeats,
        key: message.data.adapterId,
        value: encodeSignedMessage(AdapterHeartbeatV1Schema, message, this.signingKey),
      },
    ]);
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
