import type { AccessAcknowledgedV1, AccessDriftDetectedV1, AdapterHeartbeatV1, SecurityAlertV1 } from '@portcullis/contracts';

/**
 * Where an adapter's reports go: acknowledgements, drift reports and security alerts (in order per
 * system) and heartbeats. Each call resolves once the broker holds the message. A Kafka publisher signs
 * every message with the adapter's key.
 */
export interface AdapterEventPublisher {
  publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void>;
  publishDrift(message: AccessDriftDetectedV1): Promise<void>;
  publishSecurityAlert(message: SecurityAlertV1): Promise<void>;
  publishHeartbeat(message: AdapterHeartbeatV1): Promise<void>;
  close(): Promise<void>;
}
