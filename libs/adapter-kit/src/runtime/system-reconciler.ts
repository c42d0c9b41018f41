import { CorruptJournalError } from '../enforcement-journal';
import type { SecurityAlertReason, SecurityAlertSeverity, SystemAccessChangedV1 } from '@portcullis/contracts';
import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementJournal,
  EnforcementResult,
  InspectionResult,
} from '../access-enforcer';
import type { ServedSystem } from '../config/adapter-config';
import type { AdapterLogger } from '../logging/adapter-logger';
import { describeError } from '../logging/describe-error';
import type { AdapterEventPublisher } from '../messaging/adapter-event.publisher';
import type { AdapterStateStore } from '../state/adapter-state.store';
import type { DesiredAccess, RecordPosition, SystemStateRecord } from '../state/system-state';
import type { AdapterIdentity } from './adapter-identity';
import {
  buildAcknowledgement,
  buildDriftReport,
  reportablePrincipals,
  type AcknowledgedDecision,
  type AcknowledgementReport,
} from './adapter-messages';
import type { SystemError, SystemStatus, SystemVerification } from './adapter-status';
import type { RetryBackoff } from './retry-backoff';

export interface SystemReconcilerOptions<TSystem> {
  identity: AdapterIdentity;
  system: ServedSystem<TSystem>;
  /** The stored state of the system (or an empty one). */
  state: SystemStateRecord;
  enforcer: AccessEnforcer<TSystem>;
  store: AdapterStateStore;
  publisher: AdapterEventPublisher;
  backoff: RetryBackoff;
  /** How often the system is verified while it is revoked and converged. */
  verifyIntervalMs: number;
  /** `delivered` is acknowledged only if the decision is not enforced and acknowledged within this long. */
  deliveredAckDelayMs: number;
  /** Carries adapterId and systemId. */
  logger: AdapterLogger;
}

/** What the reconciler made of a signed, valid decision for its system. */
export type AcceptVerdict =
  | { outcome: 'accepted' }
  /** The decision already held, re-issued with a later expiry: kept, nothing to enforce. */
  | { outcome: 'renewed' }
  /** The record being handled, delivered again (its storing had failed): stored again. */
  | { outcome: 'ignored' }
  | { outcome: 'refused'; reason: SecurityAlertReason; severity: SecurityAlertSeverity; detail: string };

/** How an enforcement attempt ended, from the reconciler's point of view. */
type EnforcementStep = 'converged' | 'superseded' | 'retry' | 'held';

function desiredAccessOf(event: SystemAccessChangedV1): DesiredAccess {
  return {
    state: event.data.desiredState,
    generation: event.generation,
    commandId: event.commandId,
    exemptPrincipals: event.data.exemptPrincipals,
    groupId: event.data.groupId,
    requestedBy: event.data.requestedBy,
    reason: event.data.reason,
    incidentRef: event.data.incidentRef,
    receivedAt: new Date().toISOString(),
    messageId: event.messageId,
    expiresAt: event.data.expiresAt,
  };
}

function after(position: { partition: number; offset: string }, last: RecordPosition | undefined): boolean {
  return last === undefined || position.partition !== last.partition || BigInt(position.offset) > BigInt(last.offset);
}

/**
 * Converges one system to its desired state, level-triggered: each pass compares the stored state and
 * does whatever is owed — the `delivered` acknowledgement, the enforcement, the drift report, the
 * `enforced` acknowledgement — so the same pass serves a new decision, a retry, drift and a restart after
 * a crash.
 *
 * Passes of one system never overlap; systems never wait for each other. A decision that arrives while an
 * older one is being enforced is picked up by the next pass as soon as the running enforcement returns;
 * the older one's outcome is recorded but not acknowledged (it no longer is the system's desired state).
 *
 * While the system is revoked and converged it is verified every `verifyIntervalMs`, in turn with the
 * passes (never beside an enforcement). If `inspect` finds access back, that drift is stored, reported,
 * and the same generation is enforced again and acknowledged afresh.
 */
export class SystemReconciler<TSystem> {
  private readonly state: SystemStateRecord;
  /** The desired generation of the newest record known to be on disk. */
  private savedDesiredGeneration: number;
  /** The last judged record known to be on disk: records at or before it are history. */
  private savedLastRecord?: RecordPosition;
  private saving: Promise<void> = Promise.resolve();
  /** The save that will take the next snapshot, if one is queued. */
  private nextSave?: Promise<void>;
  private pass?: Promise<void>;
  private passRequested = false;
  private retryTimer?: NodeJS.Timeout;
  private nextRetryAt?: Date;
  private failures = 0;
  /** Enforcement is not retried before this time (epoch ms), whatever wakes a pass; a newer decision resets it. */
  private retryNotBefore = 0;
  /** A generation whose enforcement failed permanently: not retried until a newer decision (or a restart). */
  private heldGeneration?: number;
  /** The `delivered` acknowledgement being published, if any (one at a time). */
  private delivering?: Promise<boolean>;
  /** The generation whose `enforced` acknowledgement is being published: a `delivered` of it would only trail behind. */
  private acknowledgingEnforcementOf?: number;
  private deliveredTimer?: NodeJS.Timeout;
  /** A `failed` acknowledgement the broker did not take: sent again by the next pass (unless superseded). */
  private owedFailure?: { decision: DesiredAccess; report: AcknowledgementReport };
  /** The drift report being published, if any (one at a time). */
  private reporting?: Promise<boolean>;
  private verificationRequested = false;
  private verifyTimer?: NodeJS.Timeout;
  private lastVerification?: SystemVerification;
  private lastError?: SystemError;
  private stopped = false;
  /** Whether the source has handed over every record that was on the topic at start (see `caughtUpWithTopic`). */
  private caughtUp = false;
  /** Whether the last judged record was judged by this run (so it exists in the topic as it is now). */
  private positionFromThisRun = false;
  /** How often the position was forgotten (`noticePartitionEnd`): a save of a snapshot from before must not bring it back. */
  private positionResets = 0;
  /** A revoke stored before this start and not yet applied: enforced until catch-up ends, whatever the history brings. */
  private readonly revokeOwedAtStart?: DesiredAccess;

  private readonly journal: EnforcementJournal = {
    read: <T>() => structuredClone(this.state.journal) as T | undefined,
    write: async <T>(value: T) => {
      this.state.journal = value === undefined ? undefined : JSON.parse(JSON.stringify(value));
      await this.persist();
    },
    clear: async () => {
      this.state.journal = undefined;
      await this.persist();
    },
  };

  constructor(private readonly options: SystemReconcilerOptions<TSystem>) {
    this.state = structuredClone(options.state);
    this.savedDesiredGeneration = this.state.desired?.generation ?? 0;
    this.savedLastRecord = this.state.lastRecord;
    const stored = this.state.desired;
    // Not a revoke read from the history before a restart: that one may be followed there by a restore.
    if (stored?.state === 'revoked' && !stored.readDuringCatchUp && (this.state.applied?.generation ?? 0) < stored.generation) {
      this.revokeOwedAtStart = stored;
    }
  }

  /** Whether the record was judged already (it is at or before the last judged record on disk). */
  hasJudged(partition: number, offset: string): boolean {
    return !after({ partition, offset }, this.savedLastRecord);
  }

  /**
   * The partition ended at `end` when it was assigned: if this system's last judged record, judged before
   * this start, lies at or beyond it, the topic has lost records since — recreated, mirrored without its offsets, or truncated (an unclean
   * leader election) — and offsets are being written again that this system took for history. It forgets its
   * position and judges the partition afresh, like a fresh adapter: records are told apart by generation
   * (nothing older than the decision held can take effect), not by offset. Logged as an error.
   */
  noticePartitionEnd(partition: number, end: string): void {
    const last = this.savedLastRecord;
    // A position judged by this run is of the topic as it is (and may well lie beyond where it ended when assigned).
    if (this.positionFromThisRun || last === undefined || last.partition !== partition || BigInt(last.offset) < BigInt(end)) return;
    this.options.logger.error(
      `partition ${partition} of the decisions topic ends at offset ${end}, at or before the last record this system judged ` +
        `(${last.offset}): the topic was recreated or truncated. Judging its records afresh; generations still refuse anything ` +
        'older than the decision held',
      { partition, partitionEnd: end, lastJudgedOffset: last.offset, heldGeneration: this.state.desired?.generation },
    );
    this.savedLastRecord = undefined;
    this.positionResets += 1;
    if (this.state.lastRecord && !after(this.state.lastRecord, last)) this.state.lastRecord = undefined;
  }

  /** Whether any record was ever judged for this system (false for a fresh adapter, or state from before signing). */
  hasJudgedAny(): boolean {
    return this.state.lastRecord !== undefined;
  }

  /** Remembers a refused record as judged, so a restart does not alert about it again. */
  async noteJudged(position: RecordPosition): Promise<void> {
    if (!after(position, this.state.lastRecord)) return;
    this.state.lastRecord = position;
    this.positionFromThisRun = true;
    await this.persist();
  }

  get systemId(): string {
    return this.options.system.systemId;
  }

  /**
   * Starts a pass for whatever the stored state owes (enforcement or reports), and periodic verification. A
   * stored revoke still owed is enforced at once, before the topic is read: withdrawing access never waits
   * for the broker. A stored restore still owed waits until the source has caught up (see `caughtUpWithTopic`).
   */
  resume(): void {
    this.schedule();
    this.armVerification();
  }

  /**
   * The source has handed over every record that was on the topic when the adapter started. Until then the
   * adapter stores and judges what it reads but enforces none of it, nor a restore stored before the start:
   * a newer decision may still follow in the history. Enforcing each decision as it was read would replay
   * the system's past on the live target — a restore read on the way to the revoke after it gives access back
   * for as long as that takes, during an incident; a revoke read on the way to a later restore cuts everyone
   * off (sessions ended) on a system that is meant to be open. After catch-up the latest decision is enforced.
   */
  caughtUpWithTopic(): void {
    if (this.caughtUp) return;
    this.caughtUp = true;
    if (this.state.desired?.readDuringCatchUp) {
      // The latest decision now. If this save fails, a restart only waits for its catch-up once more.
      delete this.state.desired.readDuringCatchUp;
      this.persist().catch((error: unknown) => this.options.logger.warn('could not save the end of catch-up', { error: describeError(error) }));
    }
    if (this.state.desired && !this.converged()) {
      this.schedule();
      this.armDeliveredAcknowledgement();
    }
  }

  /** Whether enforcing the desired decision must wait for the catch-up to end (see `caughtUpWithTopic`). */
  private withheldUntilCaughtUp(): boolean {
    const desired = this.state.desired;
    return !this.caughtUp && desired !== undefined && (desired.readDuringCatchUp === true || desired.state === 'active');
  }

  /**
   * The decision passes enforce: the desired one, except while it is withheld — then a revoke stored before
   * the start and not yet applied (retried as usual, however much history is read meanwhile), or nothing.
   */
  private enforcementTarget(): DesiredAccess | undefined {
    if (!this.withheldUntilCaughtUp()) return this.state.desired;
    const owed = this.revokeOwedAtStart;
    return owed && this.appliedGeneration() < owed.generation ? owed : undefined;
  }

  /**
   * Judges a signed, valid decision for this system by its generation, against the one held:
   * - newer: stored durably, then acknowledged as `delivered` and enforced, side by side, so enforcement
   *   never waits for the broker and the source is never held up by it;
   * - the same decision again in a new message (same command, same state): a renewal before expiry;
   * - the same message id again as a new record: a replay — refused;
   * - the same generation with a different decision: only the signing key can make that — refused, critical;
   * - older: a rollback — refused. During catch-up of an adapter whose state predates record tracking,
   *   older records are the topic's history and are passed over quietly.
   * Rejects if the decision cannot be stored, so the source delivers it again.
   */
  async accept(event: SystemAccessChangedV1, position: { partition: number; offset: string; catchUp: boolean }): Promise<AcceptVerdict> {
    const held = this.state.desired;
    const heldGeneration = held?.generation ?? 0;
    const record: RecordPosition = { partition: position.partition, offset: position.offset, messageId: event.messageId };
    const last = this.state.lastRecord;
    const sameRecord = last !== undefined && last.partition === position.partition && last.offset === position.offset;
    if (sameRecord) {
      // This record was taken but its save failed: store it again, and do what taking it should have started.
      if (this.savedDesiredGeneration < heldGeneration || !this.hasJudged(position.partition, position.offset)) {
        await this.persist();
        this.schedule();
        this.armDeliveredAcknowledgement();
      }
      return { outcome: 'ignored' };
    }
    const history = position.catchUp && last === undefined;
    if (held?.messageId !== undefined && held.messageId === event.messageId) {
      if (history) return { outcome: 'ignored' };
      return {
        outcome: 'refused',
        reason: 'replayed',
        severity: 'medium',
        detail: `refused message ${event.messageId} (generation ${event.generation}): already applied, now arriving again as a new record`,
      };
    }
    if (event.generation < heldGeneration) {
      if (history) return { outcome: 'ignored' };
      return {
        outcome: 'refused',
        reason: 'rolled-back',
        severity: 'high',
        detail: `refused generation ${event.generation} (${event.data.desiredState}): generation ${heldGeneration} (${held!.state}) is already held`,
      };
    }
    if (event.generation === heldGeneration) {
      if (event.commandId !== held!.commandId || event.data.desiredState !== held!.state) {
        return {
          outcome: 'refused',
          reason: 'conflicting-generation',
          severity: 'critical',
          detail:
            `refused a second decision at generation ${event.generation}: command ${event.commandId} (${event.data.desiredState}) ` +
            `but command ${held!.commandId} (${held!.state}) holds it; only the policy service's key can sign this — check its use`,
        };
      }
      // The same decision, re-issued before it expires. An older message of it (an earlier issue, replayed)
      // would bring back what has changed since, such as an expired break-glass exemption: refused.
      if (held!.expiresAt !== undefined && Date.parse(event.data.expiresAt) <= Date.parse(held!.expiresAt)) {
        if (history) return { outcome: 'ignored' };
        return {
          outcome: 'refused',
          reason: 'replayed',
          severity: 'medium',
          detail: `refused message ${event.messageId}: an earlier issue of the decision held (generation ${event.generation}), arriving again as a new record`,
        };
      }
      held!.messageId = event.messageId;
      held!.expiresAt = event.data.expiresAt;
      held!.exemptPrincipals = event.data.exemptPrincipals;
      this.state.lastRecord = record;
      this.positionFromThisRun = true;
      await this.persist();
      this.options.logger.debug('decision renewed', { commandId: event.commandId, generation: event.generation, expiresAt: event.data.expiresAt });
      return { outcome: 'renewed' };
    }
    this.state.desired = desiredAccessOf(event);
    this.state.lastRecord = record;
    this.positionFromThisRun = true;
    // History until catch-up ends — except a revoke while a revoke from before the start is still owed: then the
    // system is meant to be closed anyway, and after a restart this revoke must still count as owed.
    const revokeOwed = this.revokeOwedAtStart !== undefined && this.appliedGeneration() < this.revokeOwedAtStart.generation;
    if (position.catchUp && !this.caughtUp && !(revokeOwed && event.data.desiredState === 'revoked')) this.state.desired.readDuringCatchUp = true;
    this.failures = 0;
    this.retryNotBefore = 0;
    // Re-enforcing an older generation is moot now; a drift not yet reported still is (see reportDrift).
    if (this.state.drift?.reported) this.state.drift = undefined;
    const desired = this.state.desired;
    try {
      await this.persist();
    } finally {
      // Even when this save failed. The record then comes again, but another save (a retry's, say) may have
      // stored this decision meanwhile, and then the record is history and skipped: this pass is what
      // enforces it. The pass is level-triggered; whatever it does first saves the state again.
      this.schedule();
      this.armDeliveredAcknowledgement();
    }
    this.options.logger.info(`decision received: ${desired.state}`, {
      commandId: desired.commandId,
      generation: desired.generation,
      groupId: desired.groupId,
      ...(this.withheldUntilCaughtUp() ? { enforcement: 'after catch-up' } : {}),
    });
    return { outcome: 'accepted' };
  }

  /** Asks the enforcer where the target stands, read-only, beside whatever runs. */
  inspect(): Promise<InspectionResult> {
    return this.callInspect(this.state.desired, this.options.logger);
  }

  /**
   * Verifies the system now if it is due (revoked and converged), in turn with the passes. Resolves once
   * the verification has run, and the re-enforcement too if it found drift.
   */
  verifyNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.verificationRequested = true;
    this.pass ??= this.drain();
    return this.pass;
  }

  /** Lets the running pass finish (an enforcement is never cut short), then does nothing more. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelRetry();
    clearTimeout(this.verifyTimer);
    clearTimeout(this.deliveredTimer);
    await this.pass;
    await this.delivering;
    await this.reporting;
    await this.saving;
  }

  status(): SystemStatus {
    const { desired, applied } = this.state;
    return {
      systemId: this.systemId,
      desired: desired && {
        state: desired.state,
        generation: desired.generation,
        commandId: desired.commandId,
        receivedAt: desired.receivedAt,
      },
      applied: applied && {
        state: applied.state,
        generation: applied.generation,
        commandId: applied.commandId,
        at: applied.at,
        detail: applied.detail,
      },
      deliveredAckGeneration: this.state.deliveredAckGeneration,
      enforcedAckGeneration: this.state.enforcedAckGeneration,
      converged: this.converged(),
      reconciling: this.pass !== undefined,
      failures: this.failures,
      nextRetryAt: this.nextRetryAt?.toISOString(),
      lastError: this.lastError,
      lastVerification: this.lastVerification,
    };
  }

  private converged(): boolean {
    const { desired, applied, drift } = this.state;
    if (desired === undefined) return true;
    return (
      applied?.generation === desired.generation &&
      this.state.enforcedAckGeneration >= desired.generation &&
      drift?.generation !== desired.generation
    );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelRetry();
    this.passRequested = true;
    this.pass ??= this.drain();
  }

  /**
   * Runs passes until none is requested, a requested verification when no pass is, then arms the retry
   * timer if the last pass asked for one.
   */
  private async drain(): Promise<void> {
    let retryInMs: number | undefined;
    while ((this.passRequested || this.verificationRequested) && !this.stopped) {
      if (this.passRequested) {
        this.passRequested = false;
        retryInMs = await this.reconcile().catch((error: unknown) => this.onPassError(error));
      } else {
        this.verificationRequested = false;
        await this.verify().catch((error: unknown) => this.onVerificationError(error));
      }
    }
    // Synchronous with the loop's last check, so a schedule() from now on starts a new drain.
    this.pass = undefined;
    if (retryInMs !== undefined && !this.stopped) this.retryIn(retryInMs);
  }

  /**
   * One level-triggered pass: enforcement first, then the reports owed. Returns the delay before the next
   * pass when something failed.
   */
  private async reconcile(): Promise<number | undefined> {
    const desired = this.state.desired;
    if (!desired) return undefined;
    let failed = false;
    let backingOffMs: number | undefined;
    const target = this.enforcementTarget();
    if (target && this.enforcementOwed(target)) {
      const waitMs = this.retryNotBefore - Date.now();
      if (waitMs > 0) backingOffMs = waitMs;
      else failed = (await this.enforce(target)) === 'retry';
    }
    failed = !(await this.deliver()) || failed;
    failed = !(await this.reportOwedFailure()) || failed;
    failed = !(await this.reportDrift()) || failed;
    // `enforced` never overtakes a `delivered` or a drift report on its way, so they leave in order. (A
    // `delivered` not sent yet is not sent at all: `enforced` says more.)
    const applied = this.state.applied;
    const deliveredFirst = this.delivering === undefined;
    const driftReportedFirst = this.state.drift?.reported !== false;
    if (applied && applied.generation === this.state.desired?.generation && deliveredFirst && driftReportedFirst) {
      failed = !(await this.acknowledgeEnforcement()) || failed;
    }
    if (failed) return this.backOff();
    if (backingOffMs === undefined) this.failures = 0;
    return backingOffMs;
  }

  /** The desired generation is not applied yet, or the target drifted from it; unless held after a permanent failure. */
  private enforcementOwed(desired: DesiredAccess): boolean {
    if (this.heldGeneration === desired.generation) return false;
    const drift = this.state.drift;
    const drifted = drift?.generation === desired.generation && !drift.reenforced;
    return this.appliedGeneration() < desired.generation || drifted;
  }

  private onPassError(error: unknown): number {
    this.noteError('state', describeError(error), this.state.desired?.generation);
    this.options.logger.error('reconciliation pass failed; will retry', {
      error: describeError(error),
      failures: this.failures + 1,
    });
    return this.backOff();
  }

  /** Counts a failed pass and returns how long to wait before the next one. */
  private backOff(): number {
    this.failures += 1;
    const delayMs = this.options.backoff.delayAfter(this.failures);
    this.retryNotBefore = Date.now() + delayMs;
    return delayMs;
  }

  private async enforce(desired: DesiredAccess): Promise<EnforcementStep> {
    const action = desired.state === 'revoked' ? 'revoke' : 'restore';
    const logger = this.decisionLogger(desired);
    const afterDrift = this.state.drift?.generation === desired.generation;
    logger.info(`enforcing: ${action}`, { attempt: this.failures + 1, afterDrift });
    const result = await this.callEnforcer(action, desired, logger);
    const superseded = this.enforcementTarget()?.generation !== desired.generation;

    if (result.outcome === 'applied' || result.outcome === 'already-in-state') {
      this.state.applied = {
        state: desired.state,
        generation: desired.generation,
        commandId: desired.commandId,
        at: new Date().toISOString(),
        detail: result.detail,
        principalsChanged: result.principalsChanged,
        sessionsTerminated: result.sessionsTerminated,
      };
      const drift = this.state.drift;
      if (drift?.generation === desired.generation) drift.reenforced = true;
      this.lastError = undefined;
      await this.persist();
      logger.info(`${action}: ${result.outcome}`, {
        detail: result.detail,
        principalsChanged: result.principalsChanged,
        sessionsTerminated: result.sessionsTerminated,
        superseded,
      });
      return superseded ? 'superseded' : 'converged';
    }

    if (superseded) {
      logger.warn(`${action} failed, but a newer decision has arrived meanwhile`, { detail: result.detail });
      return 'superseded';
    }
    const willRetry = result.outcome === 'failed-retriable';
    this.noteError('enforcement', result.detail, desired.generation);
    if (willRetry) {
      const delayMs = this.options.backoff.delayAfter(this.failures + 1);
      logger.warn(`${action} failed; will retry`, { detail: result.detail, attempt: this.failures + 1, delayMs });
    } else {
      this.heldGeneration = desired.generation;
      logger.error(`${action} failed permanently; waiting for a newer decision`, { detail: result.detail });
    }
    this.owedFailure = {
      decision: desired,
      report: {
        status: 'failed',
        detail: result.detail,
        willRetry,
        principalsChanged: result.principalsChanged,
        sessionsTerminated: result.sessionsTerminated,
      },
    };
    // Held or not, a `failed` the broker did not take is retried like any acknowledgement.
    return (await this.reportOwedFailure()) && !willRetry ? 'held' : 'retry';
  }

  private async callEnforcer(
    action: 'revoke' | 'restore',
    desired: DesiredAccess,
    logger: AdapterLogger,
  ): Promise<EnforcementResult> {
    const { system, enforcer } = this.options;
    const context: EnforcementContext<TSystem> = {
      systemId: system.systemId,
      system: system.config,
      exemptPrincipals: this.exemptPrincipals(desired),
      journal: this.journal,
      commandId: desired.commandId,
      generation: desired.generation,
      logger,
    };
    try {
      return await enforcer[action](context);
    } catch (error) {
      if (error instanceof CorruptJournalError) return { outcome: 'failed-permanent', detail: error.message };
      return { outcome: 'failed-retriable', detail: `${enforcer.kind} enforcer threw: ${describeError(error)}` };
    }
  }

  /** Publishes the `failed` acknowledgement still owed for the desired decision, if any; false if that failed. */
  private async reportOwedFailure(): Promise<boolean> {
    const owed = this.owedFailure;
    if (!owed) return true;
    if (owed.decision.generation !== this.state.desired?.generation) {
      this.owedFailure = undefined; // superseded: the newer decision gets its own acknowledgements
      return true;
    }
    try {
      await this.publish(owed.decision, owed.report);
      if (this.owedFailure === owed) this.owedFailure = undefined;
      // `failed` says the decision arrived, too.
      this.state.deliveredAckGeneration = Math.max(this.state.deliveredAckGeneration, owed.decision.generation);
      return true;
    } catch (error) {
      this.ackFailed('failed', owed.decision.generation, error);
      return false;
    }
  }

  /** Publishes the `delivered` acknowledgement if it is owed, one at a time; false if that failed. */
  private deliver(): Promise<boolean> {
    this.delivering ??= this.acknowledgeDelivery().finally(() => {
      this.delivering = undefined;
    });
    return this.delivering;
  }

  /**
   * Acknowledges delivery of the desired decision when it is owed: not acknowledged yet, not enforced
   * meanwhile, and received at least `deliveredAckDelayMs` ago (the timer armed on receipt comes back then;
   * after a restart it is long past). Once the decision is enforced here, `enforced` is owed and says more:
   * a `delivered` right before it would only double the acknowledgements — and it would be sent exactly
   * when this adapter is slow because it is busy, adding work where there is most of it.
   */
  private async acknowledgeDelivery(): Promise<boolean> {
    const desired = this.state.desired;
    if (!desired || this.state.deliveredAckGeneration >= desired.generation) return true;
    if (this.withheldUntilCaughtUp()) return true; // it may be history: acknowledged once catch-up has ended
    // "decision stored" only once it is: its save may have failed (the pass runs anyway, see accept).
    if (this.savedDesiredGeneration < desired.generation) return true;
    if (this.state.enforcedAckGeneration >= desired.generation || this.appliedGeneration() >= desired.generation) return true;
    if (this.acknowledgingEnforcementOf === desired.generation) return true;
    if (Date.now() - Date.parse(desired.receivedAt) < this.options.deliveredAckDelayMs) return true;
    try {
      const detail = `decision stored; ${desired.state === 'revoked' ? 'revoking' : 'restoring'} access`;
      await this.publish(desired, { status: 'delivered', detail });
      this.state.deliveredAckGeneration = Math.max(this.state.deliveredAckGeneration, desired.generation);
      await this.persist();
      return true;
    } catch (error) {
      this.ackFailed('delivered', desired.generation, error);
      return false;
    }
  }

  /** Returns false if the acknowledgement was owed and could not be published. */
  private async acknowledgeEnforcement(): Promise<boolean> {
    const applied = this.state.applied!;
    const drift = this.state.drift;
    const reenforced = drift?.generation === applied.generation && drift.reenforced;
    if (this.state.enforcedAckGeneration >= applied.generation && !reenforced) return true;
    this.acknowledgingEnforcementOf = applied.generation;
    try {
      await this.publish(applied, {
        status: 'enforced',
        detail: applied.detail,
        principalsChanged: applied.principalsChanged,
        sessionsTerminated: applied.sessionsTerminated,
      });
      this.state.enforcedAckGeneration = applied.generation;
      // `enforced` implies delivery: nothing more to say about it.
      this.state.deliveredAckGeneration = Math.max(this.state.deliveredAckGeneration, applied.generation);
      if (reenforced) this.state.drift = undefined;
      await this.persist();
      this.options.logger.info(reenforced ? 'acknowledged: enforced again after drift' : 'acknowledged: enforced', {
        commandId: applied.commandId,
        generation: applied.generation,
      });
      return true;
    } catch (error) {
      this.ackFailed('enforced', applied.generation, error);
      return false;
    } finally {
      this.acknowledgingEnforcementOf = undefined;
    }
  }

  /**
   * Sends `delivered` for the decision just taken — at once, or once `deliveredAckDelayMs` has passed
   * without it being enforced; then lets a pass send `enforced` (or retry `delivered`).
   */
  private armDeliveredAcknowledgement(): void {
    clearTimeout(this.deliveredTimer);
    // Twice: the first call may only join a `delivered` of an older generation still in flight.
    const send = () => void this.deliver().then(() => this.deliver()).then(() => this.schedule());
    if (this.options.deliveredAckDelayMs === 0) return send();
    this.deliveredTimer = setTimeout(() => {
      this.deliveredTimer = undefined;
      if (!this.stopped) send();
    }, this.options.deliveredAckDelayMs);
  }

  /** Publishes the drift report if one is owed, one at a time; false if that failed. */
  private reportDrift(): Promise<boolean> {
    this.reporting ??= this.publishDriftReport().finally(() => {
      this.reporting = undefined;
    });
    return this.reporting;
  }

  private async publishDriftReport(): Promise<boolean> {
    const drift = this.state.drift;
    if (!drift || drift.reported) return true;
    try {
      await this.options.publisher.publishDrift(buildDriftReport(this.options.identity, this.systemId, drift));
      drift.reported = true;
      // Reported and superseded by a newer decision: nothing more is owed about it.
      if (drift.generation !== this.state.desired?.generation) this.state.drift = undefined;
      await this.persist();
      return true;
    } catch (error) {
      this.noteError('acknowledgement', `could not report drift: ${describeError(error)}`, drift.generation);
      this.options.logger.warn('could not report drift; will retry', { generation: drift.generation, error: describeError(error) });
      return false;
    }
  }

  /**
   * Checks, if the system is due, that access is still revoked. Drift (access back) is stored, reported
   * and the pass that follows enforces the same generation again; an unreachable target is noted and
   * checked again at the next interval.
   */
  private async verify(): Promise<void> {
    const desired = this.state.desired;
    // Revoked and converged; no older drift still to report (it would be overwritten).
    if (desired?.state !== 'revoked' || !this.converged() || this.state.drift) return;
    const logger = this.decisionLogger(desired);
    const inspection = await this.callInspect(desired, logger);
    if (this.state.desired?.generation !== desired.generation) {
      logger.debug('verification outdated by a newer decision');
      return;
    }
    this.lastVerification = {
      at: new Date().toISOString(),
      generation: desired.generation,
      observedState: inspection.state,
      detail: inspection.detail,
    };
    switch (inspection.state) {
      case 'revoked':
        if (this.lastError?.source === 'verification') this.lastError = undefined;
        logger.debug('verified: access is still revoked', { detail: inspection.detail });
        return;
      case 'unknown':
        this.noteError('verification', inspection.detail, desired.generation);
        logger.warn('could not verify that access is still revoked; will try again', {
          detail: inspection.detail,
          nextInMs: this.options.verifyIntervalMs,
        });
        return;
      case 'active':
        return this.onDrift(desired, inspection, logger);
    }
  }

  private async onDrift(desired: DesiredAccess, inspection: InspectionResult, logger: AdapterLogger): Promise<void> {
    const principals = reportablePrincipals(inspection.principals);
    logger.warn('drift: access is back although it is revoked; enforcing again', { detail: inspection.detail, principals });
    this.state.drift = {
      generation: desired.generation,
      commandId: desired.commandId,
      detectedAt: new Date().toISOString(),
      detail: inspection.detail,
      principals,
      reported: false,
      reenforced: false,
    };
    this.schedule(); // the pass that follows enforces again, whether or not the drift is stored
    await this.persist();
    void this.reportDrift(); // beside the enforcement, which never waits for the broker
  }

  private onVerificationError(error: unknown): void {
    this.noteError('state', describeError(error), this.state.desired?.generation);
    this.options.logger.error('verification failed', { error: describeError(error) });
  }

  private async callInspect(desired: DesiredAccess | undefined, logger: AdapterLogger): Promise<InspectionResult> {
    const { system, enforcer } = this.options;
    try {
      return await enforcer.inspect({
        systemId: system.systemId,
        system: system.config,
        exemptPrincipals: this.exemptPrincipals(desired),
        logger,
      });
    } catch (error) {
      return { state: 'unknown', detail: `${enforcer.kind} enforcer threw: ${describeError(error)}` };
    }
  }

  private async publish(decision: AcknowledgedDecision, report: AcknowledgementReport): Promise<void> {
    const { identity, publisher } = this.options;
    await publisher.publishAcknowledgement(buildAcknowledgement(identity, this.systemId, decision, report));
  }

  private ackFailed(status: 'delivered' | 'enforced' | 'failed', generation: number, error: unknown): void {
    this.noteError('acknowledgement', `could not acknowledge "${status}": ${describeError(error)}`, generation);
    this.options.logger.warn(`could not acknowledge "${status}"; will retry`, { generation, error: describeError(error) });
  }

  private noteError(source: SystemError['source'], detail: string, generation: number | undefined): void {
    this.lastError = { source, detail, generation, at: new Date().toISOString() };
  }

  private decisionLogger(desired: DesiredAccess): AdapterLogger {
    return this.options.logger.child({ commandId: desired.commandId, generation: desired.generation });
  }

  private exemptPrincipals(desired: DesiredAccess | undefined): string[] {
    return [...new Set([...(desired?.exemptPrincipals ?? []), ...this.options.system.exemptPrincipals])];
  }

  private appliedGeneration(): number {
    return this.state.applied?.generation ?? 0;
  }

  /**
   * Makes the state durable: resolves once a snapshot taken after this call is on disk. Calls made while
   * a save is running share the next save (one fsync'd write for all of them), so a burst of changes —
   * a decision stored, its `delivered` acknowledgement, its enforcement — costs fewer writes. Saves never
   * overlap and land in order.
   */
  private persist(): Promise<void> {
    if (!this.nextSave) {
      const save = this.saving.then(async () => {
        this.nextSave = undefined; // changes from now on need a later save
        const snapshot = structuredClone(this.state);
        const resets = this.positionResets;
        await this.options.store.save(snapshot);
        this.savedDesiredGeneration = Math.max(this.savedDesiredGeneration, snapshot.desired?.generation ?? 0);
        // A snapshot taken before the position was forgotten holds the other incarnation's position: not brought back.
        if (resets === this.positionResets && snapshot.lastRecord && after(snapshot.lastRecord, this.savedLastRecord)) {
          this.savedLastRecord = snapshot.lastRecord;
        }
      });
      this.nextSave = save;
      this.saving = save.catch(() => undefined);
    }
    return this.nextSave;
  }

  private retryIn(delayMs: number): void {
    this.nextRetryAt = new Date(Date.now() + delayMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, delayMs);
  }

  /**
   * Verifies every `verifyIntervalMs`, counted from the end of the previous verification. The same tick
   * starts a pass for a system that is not converged and has nothing on its way (no pass, no retry): a
   * safety net, so that no path can leave a stored decision waiting for an event that never comes.
   */
  private armVerification(): void {
    if (this.stopped) return;
    this.verifyTimer = setTimeout(() => {
      if (!this.converged() && !this.pass && !this.retryTimer) this.schedule();
      void this.verifyNow().then(() => this.armVerification());
    }, this.options.verifyIntervalMs);
  }

  private cancelRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.nextRetryAt = undefined;
  }
}
