/**
 * Golden example messages, one per contract. Producer tests assert that what they build has the same
 * shape; consumer tests feed these to their handlers. Not part of the runtime surface: import from
 * `@portcullis/contracts/golden` in tests only.
 */
import accessAcknowledged from './access-acknowledged.v1.json';
import accessDriftDetected from './access-drift-detected.v1.json';
import adapterHeartbeat from './adapter-heartbeat.v1.json';
import adapterSecurityAlert from './adapter-security-alert.v1.json';
import systemAccessChanged from './system-access-changed.v1.json';

export const goldenMessages = {
  systemAccessChangedV1: systemAccessChanged,
  accessAcknowledgedV1: accessAcknowledged,
  accessDriftDetectedV1: accessDriftDetected,
  adapterHeartbeatV1: adapterHeartbeat,
  adapterSecurityAlertV1: adapterSecurityAlert,
} as const;
