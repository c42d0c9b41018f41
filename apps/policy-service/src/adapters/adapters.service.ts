import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AdapterHeartbeatV1 } from '@portcullis/contracts';
import { DataSource, type EntityManager } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { AdapterEntity } from '../database/entities';
import { AuditLog } from '../audit/audit-log.service';
import { AdapterKeysService, describeSignatureFailure } from './adapter-keys.service';

/** A refused heartbeat is audited at most this often per adapter (heartbeats come every few seconds). */
const REFUSED_HEARTBEAT_AUDIT_INTERVAL_MS = 10 * 60_000;

/** The inventory of adapters, from their heartbeats: who is alive and which systems each serves. */
@Injectable()
export class AdaptersService {
  private readonly log = new Logger(AdaptersService.name);
  private readonly lastRefusalAudit = new Map<string, number>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
    private readonly keys: AdapterKeysService,
    private readonly auditLog: AuditLog,
  ) {}

  /**
   * Keeps the newest heartbeat per adapter; an older one arriving late changes nothing, and neither does
   * one from an instance that started before the instance on record (an older instance still running next
   * to its replacement — logged). A heartbeat not signed by a registered key of its adapter is refused:
   * anyone could otherwise show a dead adapter alive. When an adapter says its state store failed — it is
   * alive, but takes and enforces no decision until it is restarted — or that it works again, the change
   * is audited (`adapter.failed`, `adapter.recovered`) in the transaction that records it: once per change.
   */
  async recordHeartbeat(heartbeat: AdapterHeartbeatV1, raw: Buffer | null = null): Promise<void> {
    const { data } = heartbeat;
    const refusal = describeSignatureFailure(await this.keys.verify(data.adapterId, raw && JSON.parse(raw.toString('utf8'))), data.adapterId);
    if (refusal !== null) {
      await this.refuseHeartbeat(heartbeat, refusal);
      return;
    }
    const stateStore = data.stateStore ?? null;
    await this.dataSource.transaction(async (manager) => {
      // Locked: concurrent heartbeats of one adapter (a rebalance, two instances) are judged one after the other.
      const [previous]: { instance_id: string; started_at: Date; last_seen_at: Date; state_store: AdapterEntity['stateStore'] }[] =
        await manager.query('SELECT instance_id, started_at, last_seen_at, state_store FROM adapters WHERE id = $1 FOR UPDATE', [data.adapterId]);
      if (previous) {
        if (previous.last_seen_at.getTime() >= Date.parse(heartbeat.occurredAt)) return; // older than the one on record
        if (previous.instance_id !== data.instanceId && previous.started_at.getTime() > Date.parse(data.startedAt)) {
          this.log.warn(
            `adapter ${data.adapterId}: instance ${data.instanceId} (started ${data.startedAt}) is still running next to its ` +
              `replacement ${previous.instance_id}; its heartbeats are ignored — stop it`,
          );
          return;
        }
      }
      await manager.query(
        `INSERT INTO adapters (id, kind, instance_id, started_at, interval_ms, last_seen_at, systems, state_store)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, instance_id = EXCLUDED.instance_id,
           started_at = EXCLUDED.started_at, interval_ms = EXCLUDED.interval_ms,
           last_seen_at = EXCLUDED.last_seen_at, systems = EXCLUDED.systems, state_store = EXCLUDED.state_store
         WHERE adapters.last_seen_at < EXCLUDED.last_seen_at`,
        [
          data.adapterId,
          data.adapterKind,
          data.instanceId,
          data.startedAt,
          data.intervalMs,
          heartbeat.occurredAt,
          JSON.stringify(data.systems),
          stateStore === null ? null : JSON.stringify(stateStore),
        ],
      );
      if (!stateStore) return; // an adapter that does not say
      const wasFailed = previous?.state_store?.status === 'failed';
      if (stateStore.status === 'failed' && !wasFailed) await this.noteStateStore(manager, heartbeat, 'adapter.failed', stateStore.error);
      if (stateStore.status === 'ok' && wasFailed) await this.noteStateStore(manager, heartbeat, 'adapter.recovered');
    });
  }

  private async noteStateStore(
    manager: EntityManager,
    heartbeat: AdapterHeartbeatV1,
    action: 'adapter.failed' | 'adapter.recovered',
    error?: string,
  ): Promise<void> {
    const { adapterId, instanceId, systems } = heartbeat.data;
    if (action === 'adapter.failed') {
      this.log.error(`adapter ${adapterId} (${instanceId}) cannot store decisions any more and enforces none until it is restarted: ${error ?? 'no detail'}`);
    } else {
      this.log.log(`adapter ${adapterId} (${instanceId}) stores decisions again`);
    }
    await this.auditLog.append(manager, {
      actor: `adapter:${adapterId}`,
      action,
      reason: action === 'adapter.failed' ? `state store failed: ${error ?? 'no detail'}` : 'state store works again',
      details: { messageId: heartbeat.messageId, instanceId, reportedAt: heartbeat.occurredAt, systems: systems.map((system) => system.systemId) },
    });
  }

  private async refuseHeartbeat(heartbeat: AdapterHeartbeatV1, refusal: string): Promise<void> {
    const adapterId = heartbeat.data.adapterId;
    const last = this.lastRefusalAudit.get(adapterId) ?? 0;
    if (Date.now() - last < REFUSED_HEARTBEAT_AUDIT_INTERVAL_MS) return;
    this.lastRefusalAudit.set(adapterId, Date.now());
    this.log.warn(`refused heartbeat ${heartbeat.messageId} claiming adapter ${adapterId}: ${refusal}`);
    await this.dataSource.transaction((manager) =>
      this.auditLog.append(manager, {
        actor: `adapter:${adapterId}`,
        action: 'heartbeat.rejected',
        reason: refusal,
        details: { messageId: heartbeat.messageId, instanceId: heartbeat.data.instanceId, keyId: heartbeat.keyId ?? null, note: 'further refusals from this adapter within 10 minutes are not audited' },
      }),
    );
  }

  async list(now = new Date()) {
    const adapters = await this.dataSource.getRepository(AdapterEntity).find({ order: { id: 'ASC' } });
    return adapters.map((adapter) => {
      const silentForMs = now.getTime() - adapter.lastSeenAt.getTime();
      return {
        id: adapter.id,
        kind: adapter.kind,
        instanceId: adapter.instanceId,
        // Silent: `stale`, whatever it said last. Alive but unable to store decisions: `failed`.
        status: silentForMs > adapter.intervalMs * this.config.adapterStaleAfterIntervals ? 'stale' : adapter.stateStore?.status === 'failed' ? 'failed' : 'online',
        startedAt: adapter.startedAt.toISOString(),
        lastSeenAt: adapter.lastSeenAt.toISOString(),
        heartbeatIntervalMs: adapter.intervalMs,
        stateStore: adapter.stateStore,
        systems: adapter.systems,
      };
    });
  }
}
