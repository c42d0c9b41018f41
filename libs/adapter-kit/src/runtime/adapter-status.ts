import type { AccessState } from '@portcullis/contracts';
import type { InspectionResult } from '../access-enforcer';

export interface SystemError {
  /**
   * What failed: the enforcement itself, publishing an acknowledgement or a drift report, writing local
   * state, or checking that access is still revoked (the target could not be inspected).
   */
  source: 'enforcement' | 'acknowledgement' | 'state' | 'verification';
  detail: string;
  generation?: number;
  at: string;
}

/** The last check that a revoked system is still revoked, and what the enforcer found. */
export interface SystemVerification {
  at: string;
  /** The decision verified. */
  generation: number;
  /** `active` is drift: it was reported and enforced again. */
  observedState: InspectionResult['state'];
  detail: string;
}

/** Where one served system stands. */
export interface SystemStatus {
  systemId: string;
  desired?: { state: AccessState; generation: number; commandId: string; receivedAt: string };
  applied?: { state: AccessState; generation: number; commandId: string; at: string; detail: string };
  deliveredAckGeneration: number;
  enforcedAckGeneration: number;
  /**
   * The target is in the desired state and that was acknowledged (or there is no decision yet); false
   * again while drift is being dealt with.
   */
  converged: boolean;
  /** An enforcement, acknowledgement or verification is running right now. */
  reconciling: boolean;
  /** Consecutive failed passes; resets when a pass succeeds or a newer decision arrives. */
  failures: number;
  nextRetryAt?: string;
  /** The error that currently stands between the system and its desired state; cleared on success. */
  lastError?: SystemError;
  /** Only revoked systems are verified. */
  lastVerification?: SystemVerification;
}

/**
 * The state store. `failed` once it refuses every save (a failed write it could not roll back, its
 * directory taken over by another instance): no decision can be stored or enforced any more, and only a
 * restart helps, so the health check fails.
 */
export interface StateStoreStatus {
  status: 'ok' | 'failed';
  /** Why it failed. */
  error?: string;
}

export interface AdapterStatus {
  adapterId: string;
  kind: string;
  instanceId: string;
  startedAt: string;
  /** Whether the desired-state consumer is connected to Kafka (joined its group). */
  connected: boolean;
  stateStore: StateStoreStatus;
  systems: SystemStatus[];
}
