import type { SystemAccessChangedV1 } from '@portcullis/contracts';
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
import type { DesiredAccess, SystemStateRecord } from '../state/system-state';
import type { AdapterIdentity } from './adapter-identity';
import { buildAcknowledgement, type AcknowledgedDecision, type AcknowledgementReport } from './adapter-messages';
import type { SystemError, SystemStatus } from './adapter-status';
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
  /** Carries adapterId and systemId. */
  logger: AdapterLogger;
}

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
  };
}

/**
 * Converges one system to its desired state, level-triggered: each pass compares the stored state and
 * does whatever is owed — the `delivered` acknowledgement, the enforcement, the `enforced`
 * acknowledgement — so the same pass serves a new decision, a retry and a restart after a crash.
 *
 * Passes of one system never overlap; systems never wait for each other. A decision that arrives while an
 * older one is being enforced is picked up by the next pass as soon as the running enforcement returns;
 * the older one's outcome is recorded but not acknowledged (it no longer is the system's desired state).
 */
export class SystemReconciler<TSystem> {
  private readonly state: SystemStateRecord;
  /** The desired generation of the newest record known to be on disk. */
  private savedDesiredGeneration: number;
  private saving: Promise<void> = Promise.resolve();
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
  private lastError?: SystemError;
  private stopped = false;

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
  }

  get systemId(): string {
    return this.options.system.systemId;
  }

  /** Starts a pass for whatever the stored state owes (enforcement or acknowledgements). */
  resume(): void {
    this.schedule();
  }

  /**
   * Takes a decision for this system. A generation below the one held is stale and a repeat of it is
   * a duplicate: both are ignored (returns false). A newer one is stored durably; then it is
   * acknowledged as `delivered` and enforced, side by side, so that enforcement never waits for the
   * broker and the source is never held up by it. Rejects if the decision cannot be stored, so the
   * source delivers it again.
   */
  async accept(event: SystemAccessChangedV1): Promise<boolean> {
    const held = this.state.desired?.generation ?? 0;
    const repeatOfUnsaved = event.generation === held && this.savedDesiredGeneration < held;
    if (event.generation < held || (event.generation === held && !repeatOfUnsaved)) return false;
    if (event.generation > held) {
      this.state.desired = desiredAccessOf(event);
      this.failures = 0;
      this.retryNotBefore = 0;
    }
    const desired = this.state.desired!;
    await this.persist();
    this.options.logger.info(`decision received: ${desired.state}`, {
      commandId: desired.commandId,
      generation: desired.generation,
      groupId: desired.groupId,
    });
    this.schedule();
    void this.deliver().then(() => this.schedule()); // the pass then sends `enforced`, or retries `delivered`
    return true;
  }

  async inspect(): Promise<InspectionResult> {
    const { system, enforcer, logger } = this.options;
    return enforcer.inspect({
      systemId: system.systemId,
      system: system.config,
      exemptPrincipals: this.exemptPrincipals(this.state.desired),
      logger,
    });
  }

  /** Lets the running pass finish (an enforcement is never cut short), then does nothing more. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelRetry();
    await this.pass;
    await this.delivering;
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
      converged:
        desired === undefined ||
        (applied?.generation === desired.generation && this.state.enforcedAckGeneration >= desired.generation),
      reconciling: this.pass !== undefined,
      failures: this.failures,
      nextRetryAt: this.nextRetryAt?.toISOString(),
      lastError: this.lastError,
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelRetry();
    this.passRequested = true;
    this.pass ??= this.drain();
  }

  /** Runs passes until none is requested, then arms the retry timer if the last pass asked for one. */
  private async drain(): Promise<void> {
    let retryInMs: number | undefined;
    while (this.passRequested && !this.stopped) {
      this.passRequested = false;
      retryInMs = await this.reconcile().catch((error: unknown) => this.onPassError(error));
    }
    // Synchronous with the loop's last check, so a schedule() from now on starts a new drain.
    this.pass = undefined;
    if (retryInMs !== undefined && !this.stopped) this.retryIn(retryInMs);
  }

  /**
   * One level-triggered pass: enforcement first, then the acknowledgements owed. Returns the delay
   * before the next pass when something failed.
   */
  private async reconcile(): Promise<number | undefined> {
    const desired = this.state.desired;
    if (!desired) return undefined;
    let failed = false;
    let backingOffMs: number | undefined;
    if (this.appliedGeneration() < desired.generation && this.heldGeneration !== desired.generation) {
      const waitMs = this.retryNotBefore - Date.now();
      if (waitMs > 0) backingOffMs = waitMs;
      else failed = (await this.enforce(desired)) === 'retry';
    }
    failed = !(await this.deliver()) || failed;
    // `enforced` only ever follows `delivered`, so the two leave in order.
    const applied = this.state.applied;
    const deliveredFirst = (applied?.generation ?? 0) <= this.state.deliveredAckGeneration;
    if (applied && applied.generation === this.state.desired?.generation && deliveredFirst) {
      failed = !(await this.acknowledgeEnforcement()) || failed;
    }
    if (failed) return this.backOff();
    if (backingOffMs === undefined) this.failures = 0;
    return backingOffMs;
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
    const logger = this.options.logger.child({ commandId: desired.commandId, generation: desired.generation });
    logger.info(`enforcing: ${action}`, { attempt: this.failures + 1 });
    const result = await this.callEnforcer(action, desired, logger);
    const superseded = this.state.desired?.generation !== desired.generation;

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
    await this.publish(desired, {
      status: 'failed',
      detail: result.detail,
      willRetry,
      principalsChanged: result.principalsChanged,
      sessionsTerminated: result.sessionsTerminated,
    }).catch((error: unknown) => logger.warn('could not publish the failed acknowledgement', { error: describeError(error) }));
    return willRetry ? 'retry' : 'held';
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
      return { outcome: 'failed-retriable', detail: `${enforcer.kind} enforcer threw: ${describeError(error)}` };
    }
  }

  /** Publishes the `delivered` acknowledgement if it is owed, one at a time; false if that failed. */
  private deliver(): Promise<boolean> {
    this.delivering ??= this.acknowledgeDelivery().finally(() => {
      this.delivering = undefined;
    });
    return this.delivering;
  }

  private async acknowledgeDelivery(): Promise<boolean> {
    const desired = this.state.desired;
    if (!desired || this.state.deliveredAckGeneration >= desired.generation) return true;
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
    if (this.state.enforcedAckGeneration >= applied.generation) return true;
    try {
      await this.publish(applied, {
        status: 'enforced',
        detail: applied.detail,
        principalsChanged: applied.principalsChanged,
        sessionsTerminated: applied.sessionsTerminated,
      });
      this.state.enforcedAckGeneration = applied.generation;
      await this.persist();
      this.options.logger.info('acknowledged: enforced', { commandId: applied.commandId, generation: applied.generation });
      return true;
    } catch (error) {
      this.ackFailed('enforced', applied.generation, error);
      return false;
    }
  }

  private async publish(decision: AcknowledgedDecision, report: AcknowledgementReport): Promise<void> {
    const { identity, publisher } = this.options;
    await publisher.publishAcknowledgement(buildAcknowledgement(identity, this.systemId, decision, report));
  }

  private ackFailed(status: 'delivered' | 'enforced', generation: number, error: unknown): void {
    this.noteError('acknowledgement', `could not acknowledge "${status}": ${describeError(error)}`, generation);
    this.options.logger.warn(`could not acknowledge "${status}"; will retry`, { generation, error: describeError(error) });
  }

  private noteError(source: SystemError['source'], detail: string, generation: number | undefined): void {
    this.lastError = { source, detail, generation, at: new Date().toISOString() };
  }

  private exemptPrincipals(desired: DesiredAccess | undefined): string[] {
    return [...new Set([...(desired?.exemptPrincipals ?? []), ...this.options.system.exemptPrincipals])];
  }

  private appliedGeneration(): number {
    return this.state.applied?.generation ?? 0;
  }

  /** Writes a snapshot of the state; writes land in the order they were asked for. */
  private persist(): Promise<void> {
    const snapshot = structuredClone(this.state);
    const saved = this.saving.then(() => this.options.store.save(snapshot));
    this.saving = saved.catch(() => undefined);
    return saved.then(() => {
      this.savedDesiredGeneration = Math.max(this.savedDesiredGeneration, snapshot.desired?.generation ?? 0);
    });
  }

  private retryIn(delayMs: number): void {
    this.nextRetryAt = new Date(Date.now() + delayMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.schedule();
    }, delayMs);
  }

  private cancelRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.nextRetryAt = undefined;
  }
}
