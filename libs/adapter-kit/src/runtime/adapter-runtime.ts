import { decodeMessage, SystemAccessChangedV1Schema, type SystemAccessChangedV1 } from '@portcullis/contracts';
import type { AccessEnforcer, InspectionResult } from '../access-enforcer';
import type { ServedSystem } from '../config/adapter-config';
import type { AdapterLogger } from '../logging/adapter-logger';
import { describeError } from '../logging/describe-error';
import type { AdapterEventPublisher } from '../messaging/adapter-event.publisher';
import type { DesiredStateRecord, DesiredStateSource } from '../messaging/desired-state.source';
import type { AdapterStateStore } from '../state/adapter-state.store';
import { emptySystemState, type SystemStateRecord } from '../state/system-state';
import type { AdapterIdentity } from './adapter-identity';
import { buildHeartbeat } from './adapter-messages';
import type { AdapterStatus, SystemStatus } from './adapter-status';
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
      await source.start((record) => this.receive(record));
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.beat();
    logger.info('adapter started', {
      kind: identity.kind,
      instanceId: identity.instanceId,
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
      systems: [...this.reconcilers.values()].map((reconciler) => reconciler.status()),
    };
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
    const { identity, enforcer, store, publisher, retry, verifyIntervalMs, logger } = this.options;
    return new SystemReconciler<TSystem>({
      identity,
      system,
      state,
      enforcer,
      store,
      publisher,
      backoff: new RetryBackoff(retry.initialMs, retry.maxMs),
      verifyIntervalMs,
      logger: logger.child({ systemId: system.systemId }),
    });
  }

  /** Validates one record where it arrives; anything that is not a decision for a served system is skipped. */
  private async receive(record: DesiredStateRecord): Promise<void> {
    const { logger, identity } = this.options;
    const position = { partition: record.partition, offset: record.offset, key: record.key };
    if (record.value === null) {
      logger.debug('skipped a tombstone', position);
      return;
    }
    // Every adapter reads the whole topic; the key is the system id, so another adapter's record is
    // skipped before it is parsed and validated (most records, with many adapters).
    if (record.key !== null && !this.reconcilers.has(record.key)) return;
    let event: SystemAccessChangedV1;
    try {
      event = decodeMessage(SystemAccessChangedV1Schema, record.value);
    } catch (error) {
      logger.warn('skipped an invalid desired-state message', { ...position, error: describeError(error) });
      return;
    }
    const { systemId, systemKind } = event.data;
    const log = logger.child({ systemId, commandId: event.commandId, generation: event.generation });
    if (record.key !== null && record.key !== systemId) {
      log.warn('skipped a desired-state message whose key is not its system id', position);
      return;
    }
    const reconciler = this.reconcilers.get(systemId);
    if (!reconciler) return; // another adapter's system: every adapter reads the whole topic
    if (systemKind !== identity.kind) {
      log.warn(`skipped a decision for a system of kind "${systemKind}"; this adapter enforces "${identity.kind}"`);
      return;
    }
    if (!(await reconciler.accept(event))) log.debug('ignored a stale or repeated decision');
  }

  private beat(): void {
    this.heartbeat = this.publishHeartbeat().finally(() => {
      if (!this.stopped) this.heartbeatTimer = setTimeout(() => this.beat(), this.options.heartbeatIntervalMs);
    });
  }

  private async publishHeartbeat(): Promise<void> {
    const { identity, heartbeatIntervalMs, publisher, logger } = this.options;
    try {
      await publisher.publishHeartbeat(buildHeartbeat(identity, heartbeatIntervalMs, this.status().systems));
    } catch (error) {
      logger.warn('could not publish a heartbeat', { error: describeError(error) });
    }
  }

  private async shutdown(): Promise<void> {
    const { source, publisher, logger } = this.options;
    this.stopped = true;
    clearTimeout(this.heartbeatTimer);
    await source.stop().catch((error: unknown) => logger.warn('could not stop consuming', { error: describeError(error) }));
    await Promise.all([...this.reconcilers.values()].map((reconciler) => reconciler.stop()));
    await this.heartbeat;
    await publisher.close().catch((error: unknown) => logger.warn('could not close the publisher', { error: describeError(error) }));
    logger.info('adapter stopped');
  }
}
