import type { InspectionResult } from '../access-enforcer';
import type { AdapterStatus, SystemStatus } from './adapter-status';

/** A started adapter, as `startAdapter` returns it. */
export interface RunningAdapter {
  readonly adapterId: string;
  readonly kind: string;
  /** Where every served system stands, and whether the adapter is connected to Kafka. */
  status(): AdapterStatus;
  system(systemId: string): SystemStatus | undefined;
  /** Asks the enforcer where the target actually stands (read-only). */
  inspect(systemId: string): Promise<InspectionResult>;
  /**
   * Verifies now, instead of at the next `verifyIntervalMs`, that access is still revoked: every served
   * system that is revoked and converged, or only `systemId`. Resolves once those verifications, and the
   * re-enforcement of any drift they found, have run. Rejects for a system the adapter does not serve.
   */
  verifyNow(systemId?: string): Promise<void>;
  /** Stops consuming, finishes in-flight enforcement and disconnects. Idempotent. */
  stop(): Promise<void>;
}

/** An adapter that is wired but not started yet (see `composeAdapter`). */
export interface StartableAdapter extends RunningAdapter {
  /** Loads local state, resumes owed work, then consumes; resolves once consuming. */
  start(): Promise<void>;
}
