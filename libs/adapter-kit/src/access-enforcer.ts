import type { AdapterLogger } from './logging/adapter-logger';

/**
 * What an enforcement did to its target:
 * - `applied`: the target was changed and is now in the desired state;
 * - `already-in-state`: nothing needed changing;
 * - `failed-retriable`: a transient problem (target unreachable, timeout); the runtime retries with back-off;
 * - `failed-permanent`: retrying cannot help (missing privilege, bad configuration); the runtime waits for a
 *   newer decision or a restart of the adapter.
 */
export type EnforcementOutcome = 'applied' | 'already-in-state' | 'failed-retriable' | 'failed-permanent';

export interface EnforcementResult {
  outcome: EnforcementOutcome;
  /** What happened, written for the people handling the incident. Lands in the acknowledgement. */
  detail: string;
  /** Principals whose access this enforcement changed. */
  principalsChanged?: number;
  /** Open sessions or connections of affected principals that were terminated. */
  sessionsTerminated?: number;
}

/**
 * Where a target actually stands: `active` while some principal that is not exempt has access, `revoked`
 * while none has, `unknown` when the target cannot be checked (unreachable, say).
 */
export interface InspectionResult {
  state: 'active' | 'revoked' | 'unknown';
  detail: string;
  /**
   * With `active`: the principals that have access, where the enforcer can name them. The runtime reports
   * them when it finds access back although it was revoked (drift).
   */
  principals?: string[];
}

/**
 * Durable memory an enforcer keeps per system, across generations and restarts: typically which
 * principals a revoke changed, so that restore gives back exactly those. `write` and `clear` resolve only
 * once the value is on disk (fsync), so an enforcer records its intent before it acts on the target.
 * Values must be JSON-serialisable; the enforcer owns their shape.
 */
export interface EnforcementJournal {
  read<T>(): T | undefined;
  write<T>(value: T): Promise<void>;
  clear(): Promise<void>;
}

export interface InspectionContext<TSystem> {
  systemId: string;
  /** The adapter-specific configuration of this system. */
  system: TSystem;
  /** Principals that must never be touched: the decision's list united with the system's local list. */
  exemptPrincipals: readonly string[];
  /** A logger whose lines carry the adapter, system, command and generation. */
  logger: AdapterLogger;
}

export interface EnforcementContext<TSystem> extends InspectionContext<TSystem> {
  journal: EnforcementJournal;
  commandId: string;
  generation: number;
}

/**
 * The plugin every adapter implements: one class that knows its kind of target. The runtime owns
 * transport, durable state, retries, acknowledgements and health. Implementations must be idempotent
 * (the runtime may call `revoke` again after a crash) and must never throw for failures they can
 * classify: they return `failed-retriable` or `failed-permanent` with a detail instead. (An exception
 * is treated as `failed-retriable`.)
 */
export interface AccessEnforcer<TSystem> {
  /** The system kind this enforcer handles, as in `SystemAccessChangedV1.data.systemKind`. */
  readonly kind: string;
  revoke(context: EnforcementContext<TSystem>): Promise<EnforcementResult>;
  restore(context: EnforcementContext<TSystem>): Promise<EnforcementResult>;
  inspect(context: InspectionContext<TSystem>): Promise<InspectionResult>;
}
