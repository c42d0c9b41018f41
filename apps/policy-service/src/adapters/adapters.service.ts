import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AdapterHeartbeatV1 } from '@portcullis/contracts';
import { DataSource } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { AdapterEntity } from '../database/entities';

/** The inventory of adapters, from their heartbeats: who is alive and which systems each serves. */
@Injectable()
export class AdaptersService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  /** Keeps the newest heartbeat per adapter; an older one arriving late changes nothing. */
  async recordHeartbeat(heartbeat: AdapterHeartbeatV1): Promise<void> {
    const { data } = heartbeat;
    await this.dataSource.query(
      `INSERT INTO adapters (id, kind, instance_id, started_at, interval_ms, last_seen_at, systems)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, instance_id = EXCLUDED.instance_id,
         started_at = EXCLUDED.started_at, interval_ms = EXCLUDED.interval_ms,
         last_seen_at = EXCLUDED.last_seen_at, systems = EXCLUDED.systems
       WHERE adapters.last_seen_at < EXCLUDED.last_seen_at`,
      [data.adapterId, data.adapterKind, data.instanceId, data.startedAt, data.intervalMs, heartbeat.occurredAt, JSON.stringify(data.systems)],
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
        status: silentForMs > adapter.intervalMs * this.config.adapterStaleAfterIntervals ? 'stale' : 'online',
        startedAt: adapter.startedAt.toISOString(),
        lastSeenAt: adapter.lastSeenAt.toISOString(),
        heartbeatIntervalMs: adapter.intervalMs,
        systems: adapter.systems,
      };
    });
  }
}
