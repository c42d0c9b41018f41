import {
  ED25519_IMPLEMENTATION,
  SystemAccessChangedV1Schema,
  verifyMessage,
  type PublicKeyLookup,
  type SecurityAlertReason,
  type SecurityAlertSeverity,
  type SystemAccessChangedV1,
} from '@portcullis/contracts';
import type { AccessEnforcer, InspectionResult } from '../access-enforcer';
import type { ServedSystem } from '../config/adapter-config';
import type { AdapterLogger } from '../logging/adapter-logger';
import { describeError } from '../logging/describe-error';
import type { AdapterEventPublisher } from '../messaging/adapter-event.publisher';
import type { DesiredStateRecord, DesiredStateSource } from '../messaging/desired-state.source';
import type { AdapterStateStore } from '../state/adapter-state.store';
import { emptySystemState, type SystemStateRecord } from '../state/system-state';
import type { AdapterIdentity } from './adapter-identity';
import { buildHeartbeat, buildSecurityAlert, type RefusedRecord } from './adapter-messages';
import type { AdapterStatus, StateStoreStatus, SystemStatus } from './adapter-status';
import { RetryBackoff } from './retry-backoff';
import type { StartableAdapter } from './running-adapter';
import { SystemReconciler } from './system-reconciler';

export interface AdapterRuntimeOptions<TSystem> {
  identity: AdapterIdentity;
  systems: readonly ServedSystem<TSystem>[];
  enforcer: AccessEnforcer<TSystem>;
  store: AdapterStateStore;
  source: DesiredStateSource;
  publisher: AdapterEventPublisher;
  retry: { initialMs: number; maxMs: number };
  heartbeatIntervalMs: number;
  verifyIntervalMs: number;
  /** `delivered` is acknowledged only for an enforcement that takes longer than this. */
  deliveredAckDelayMs: number;
  /** The policy service's public keys: only decisions signed by one of them are obeyed. */
  trustedKeys: PublicKeyLookup;
  /** Carries adapterId. */
  logger: AdapterLogger;
}

/**
 * The shared runtime of every adapter: it loads the stored state of each served system, resumes whatever
 * a previous run left owed, feeds validated decisions from the source to one `SystemReconciler` per
 * system (which also verifies revoked systems for drift), and publishes heartbeats. Transport, storage and the target sit behind ports, so the whole
 * runtime runs in unit tests with fakes.
 */
export class AdapterRuntime<TSystem> implements StartableAdapter {
  private readonly reconcilers = new Map<string, SystemReconciler<TSystem>>();
  private heartbeatTimer?: NodeJS.Timeout;
  private heartbeat?: Promise<void>;
  private stopped = false;
  private stopping?: Promise<void>;
  private storeFailureLogged = false;

  constructor(private readonly options: AdapterRuntimeOptions<TSystem>) {}

  get adapterId(): string {
    return this.options.identity.adapterId;
  }

  get kind(): string {
    return this.options.identity.kind;
  }

  /**
   * Loads local state and resumes owed work (before any message arrives, so enforcement of what was
   * already decided does not wait for Kafka), then starts consuming and heartbeating.
   */
  async start(): Promise<void> {
    const { store, systems, source, logger, identity } = this.options;
    await store.open();
    for (const system of systems) {
      const state = (await store.load(system.systemId)) ?? emptySystemState(system.systemId);
      this.reconcilers.set(system.systemId, this.reconcilerFor(system, state));
    }
    for (const reconciler of this.reconcilers.values()) reconciler.resume();
    try {
      await source.start(
        (record) => this.receive(record),
        (key) => this.reconcilers.has(key),
        () => this.onCaughtUp(),
      );
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.beat();
    logger.info('adapter started', {
      kind: identity.kind,
      instanceId: identity.instanceId,
      signatures: `Ed25519 via ${ED25519_IMPLEMENTATION}`,
      systems: systems.map((system) => system.systemId),
    });
  }

  /** Stops consuming, lets in-flight enforcements finish, then closes the publisher. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  status(): AdapterStatus {
    const { identity, source } = this.options;
    return {
      adapterId: identity.adapterId,
      kind: identity.kind,
      instanceId: identity.instanceId,
      startedAt: identity.startedAt.toISOString(),
      connected: source.isConnected(),
      stateStore: this.stateStoreStatus(),
      systems: [...this.reconcilers.values()].map((reconciler) => reconciler.status()),
    };
  }

  /** Looked at by every `status()`: each heartbeat and health check. The first failure seen is logged once. */
  private stateStoreStatus(): StateStoreStatus {
    const failure = this.options.store.failure?.();
    if (!failure) return { status: 'ok' };
    if (!this.storeFailureLogged) {
      this.storeFailureLogged = true;
      this.options.logger.error('the state store failed: no decision can be stored or enforced until the adapter is restarted', {
        error: describeError(failure),
      });
    }
    return { status: 'failed', error: failure.message };
  }

  system(systemId: string): SystemStatus | undefined {
    return this.reconcilers.get(systemId)?.status();
  }

  async inspect(systemId: string): Promise<InspectionResult> {
    return this.reconcilerOf(systemId).inspect();
  }

  async verifyNow(systemId?: string): Promise<void> {
    const reconcilers = systemId === undefined ? [...this.reconcilers.values()] : [this.reconcilerOf(systemId)];
    await Promise.all(reconcilers.map((reconciler) => reconciler.verifyNow()));
  }

  private reconcilerOf(systemId: string): SystemReconciler<TSystem> {
    const reconciler = this.reconcilers.get(systemId);
    if (!reconciler) throw new Error(`adapter ${this.adapterId} does not serve system "${systemId}"`);
    return reconciler;
  }

  private reconcilerFor(system: ServedSystem<TSystem>, state: SystemStateRecord): SystemReconciler<TSystem> {
    const { identity, enforcer, store, publisher, retry, verifyIntervalMs, deliveredAckDelayMs, logger } = this.options;
    return new SystemReconciler<TSystem>({
      identity,
      system,
      state,
      enforcer,
      store,
      publisher,
      backoff: new RetryBackoff(retry.initialMs, retry.maxMs),
      verifyIntervalMs,
      deliveredAckDelayMs,
      logger: logger.child({ systemId: system.systemId }),
    });
  }

  /**
   * Judges one record of the desired-state topic. Records of systems this adapter does not serve are
   * skipped unread. For a served system, a record already judged (at or before the system's last record)
   * is history; anything else must be a well-formed decision for this system and this adapter, signed by
   * a trusted policy-service key and not expired — and then the system's reconciler judges its generation.
   * Every refusal is published as `adapter.security-alert` before the record counts as handled, and the
   * target is never touched for it.
   */
  private async receive(record: DesiredStateRecord): Promise<void> {
    const { logger, identity, trustedKeys } = this.options;
    const position = { partition: record.partition, offset: record.offset, key: record.key };
    if (record.value === null) {
      logger.debug('skipped a tombstone', position);
      return;
    }
    // Every adapter reads the whole topic; the key is the system id, so another adapter's record is
    // skipped before it is parsed (most records, with many adapters).
    if (record.key !== null && !this.reconcilers.has(record.key)) return;
    let raw: unknown;
    try {
      raw = JSON.parse(record.value.toString('utf8'));
    } catch {
      raw = undefined;
    }
    const claimed = claimsOf(raw);
    const systemId = record.key ?? claimed.systemId;
    const reconciler = systemId === undefined ? undefined : this.reconcilers.get(systemId);
    if (!reconciler) return; // a record without a key that names no system this adapter serves
    if (record.partitionEnd !== undefined) reconciler.noticePartitionEnd(record.partition, record.partitionEnd);
    if (reconciler.hasJudged(record.partition, record.offset)) return; // history: judged before this start
    const refuse = (reason: SecurityAlertReason, severity: SecurityAlertSeverity, detail: string) =>
      this.refuse(reconciler, { reason, severity, detail }, { ...claimed, partition: record.partition, offset: record.offset });

    if (record.key === null) return refuse('wrong-target', 'high', `a record without a key claims system "${systemId}"`);
    const signature = verifyMessage(raw, trustedKeys);
    if (!signature.valid) {
      switch (signature.reason) {
        case 'unsigned':
          return refuse('unsigned', 'high', 'refused an unsigned decision');
        case 'unknown-key':
          return refuse('unknown-key', 'high', `refused a decision signed with key "${signature.keyId}", which this adapter does not trust`);
        case 'bad-signature':
          return refuse('bad-signature', 'high', `refused a decision whose signature does not verify with key "${signature.keyId}": forged or altered after signing`);
      }
    }
    const parsed = SystemAccessChangedV1Schema.safeParse(raw);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(message)'}: ${issue.message}`);
      return refuse('malformed', 'medium', `refused a signed decision that breaks the contract: ${issues.join('; ')}`);
    }
    const event: SystemAccessChangedV1 = parsed.data;
    const { data } = event;
    if (data.systemId !== systemId) {
      return refuse('wrong-target', 'high', `refused a decision for system "${data.systemId}" published under the key of "${systemId}"`);
    }
    if (data.adapterId !== identity.adapterId) {
      return refuse('wrong-target', 'high', `refused a decision addressed to adapter "${data.adapterId}"; this is "${identity.adapterId}"`);
    }
    if (data.systemKind !== identity.kind) {
      return refuse('wrong-target', 'high', `refused a decision for a system of kind "${data.systemKind}"; this adapter enforces "${identity.kind}"`);
    }
    if (Date.parse(data.expiresAt) <= Date.now()) {
      if (record.catchUp && !reconciler.hasJudgedAny()) {
        // A fresh adapter reading the history of the topic on its way to the current decision.
        logger.info('skipped an expired decision in the topic history', { ...position, generation: event.generation });
        return;
      }
      return refuse('expired', 'medium', `refused a decision that expired at ${data.expiresAt}`);
    }
    const verdict = await reconciler.accept(event, { partition: record.partition, offset: record.offset, catchUp: record.catchUp === true });
    if (verdict.outcome === 'refused') return refuse(verdict.reason, verdict.severity, verdict.detail);
    if (verdict.outcome === 'ignored') logger.debug('ignored a decision already held', { ...position, generation: event.generation });
  }

  private async refuse(
    reconciler: SystemReconciler<TSystem>,
    refusal: { reason: SecurityAlertReason; severity: SecurityAlertSeverity; detail: string },
    record: RefusedRecord,
  ): Promise<void> {
    const { identity, publisher, logger } = this.options;
    logger.error(`security alert: ${refusal.detail}`, { systemId: reconciler.systemId, reason: refusal.reason, severity: refusal.severity, ...record });
    // Published before the record counts as judged: if the broker does not take it, the record comes again.
    await publisher.publishSecurityAlert(buildSecurityAlert(identity, reconciler.systemId, refusal, record));
    await reconciler.noteJudged({ partition: record.partition, offset: record.offset, messageId: record.messageId });
  }

  /** The source has handed over the topic's history: each system now enforces the latest decision it holds. */
  private onCaughtUp(): void {
    const owed = [...this.reconcilers.values()].filter((reconciler) => !reconciler.status().converged).map((reconciler) => reconciler.systemId);
    this.options.logger.info('caught up with the decisions topic: enforcing the latest decision of each system', { notConverged: owed });
    for (const reconciler of this.reconcilers.values()) reconciler.caughtUpWithTopic();
  }

  private beat(): void {
    this.heartbeat = this.publishHeartbeat().finally(() => {
      if (!this.stopped) this.heartbeatTimer = setTimeout(() => this.beat(), this.options.heartbeatIntervalMs);
    });
  }

  private async publishHeartbeat(): Promise<void> {
    const { identity, heartbeatIntervalMs, publisher, logger } = this.options;
    try {
      const { systems, stateStore } = this.status();
      await publisher.publishHeartbeat(buildHeartbeat(identity, heartbeatIntervalMs, systems, stateStore));
    } catch (error) {
      logger.warn('could not publish a heartbeat', { error: describeError(error) });
    }
  }

  private async shutdown(): Promise<void> {
    const { source, publisher, store, logger } = this.options;
    this.stopped = true;
    clearTimeout(this.heartbeatTimer);
    await source.stop().catch((error: unknown) => logger.warn('could not stop consuming', { error: describeError(error) }));
    await Promise.all([...this.reconcilers.values()].map((reconciler) => reconciler.stop()));
    await this.heartbeat;
    await store.close?.().catch((error: unknown) => logger.warn('could not close the state store', { error: describeError(error) }));
    await publisher.close().catch((error: unknown) => logger.warn('could not close the publisher', { error: describeError(error) }));
    logger.info('adapter stopped');
  }
}

/** What a record claims about itself, read without trusting it (for alerts and routing only). */
function claimsOf(raw: unknown): Omit<RefusedRecord, 'partition' | 'offset'> & { systemId?: string } {
  if (typeof raw !== 'object' || raw === null) return {};
  const message = raw as Record<string, unknown>;
  const data = (typeof message.data === 'object' && message.data !== null ? message.data : {}) as Record<string, unknown>;
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  return {
    systemId: text(data.systemId),
    messageId: text(message.messageId),
    commandId: text(message.commandId),
    generation: typeof message.generation === 'number' ? message.generation : undefined,
    keyId: text(message.keyId),
    desiredState: text(data.desiredState),
  };
}
