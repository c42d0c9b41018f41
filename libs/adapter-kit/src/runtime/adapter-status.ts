import type { AccessState } from '@portcullis/contracts';

export interface SystemError {
  /** What failed: the enforcement itself, publishing an acknowledgement, or writing local state. */
  source: 'enforcement' | 'acknowledgement' | 'state';
  detail: string;
  generation?: number;
  at: string;
}

/** Where one served system stands. */
export interface SystemStatus {
  systemId: string;
  desired?: { state: AccessState; generation: number; commandId: string; receivedAt: string };
  applied?: { state: AccessState; generation: number; commandId: string; at: string; detail: string };
  deliveredAckGeneration: number;
  enforcedAckGeneration: number;
  /** The target is in the desired state and that was acknowledged (or there is no decision yet). */
  converged: boolean;
  /** An enforcement or acknowledgement is running right now. */
  reconciling: boolean;
  /** Consecutive failed passes; resets when a pass succeeds or a newer decision arrives. */
  failures: number;
  nextRetryAt?: string;
  /** The error that currently stands between the system and its desired state; cleared on success. */
  lastError?: SystemError;
}

export interface AdapterStatus {
  adapterId: string;
  kind: string;
  instanceId: string;
  startedAt: string;
  /** Whether the desired-state consumer is connected to Kafka (joined its group). */
  connected: boolean;
  systems: SystemStatus[];
}
