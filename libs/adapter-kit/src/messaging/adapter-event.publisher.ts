import type { AccessAcknowledgedV1, AdapterHeartbeatV1 } from '@portcullis/contracts';

/** Where an adapter's acknowledgements and heartbeats go. Each call resolves once the broker holds it. */
export interface AdapterEventPublisher {
  publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void>;
  publishHeartbeat(message: AdapterHeartbeatV1): Promise<void>;
  close(): Promise<void>;
}
