import type { AccessAcknowledgedV1, AccessDriftDetectedV1, AdapterHeartbeatV1 } from '@portcullis/contracts';

/**
 * Where an adapter's reports go: acknowledgements and drift reports (in order per system) and
 * heartbeats. Each call resolves once the broker holds the message.
 */
export interface AdapterEventPublisher {
  publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void>;
  publishDrift(message: AccessDriftDetectedV1): Promise<void>;
  publishHeartbeat(message: AdapterHeartbeatV1): Promise<void>;
  close(): Promise<void>;
}
