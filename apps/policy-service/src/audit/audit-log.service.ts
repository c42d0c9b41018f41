import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { AuditEntryEntity } from '../database/entities';

export interface AuditEntryInput {
  /** `user:<sub>` for people and automations, `adapter:<id>` for adapters, `system` for the service itself. */
  actor: string;
  /** What happened, as a past-tense fact: `group.revoked`, `acknowledgement.enforced`, ... */
  action: string;
  groupId?: string | null;
  systemId?: string | null;
  commandId?: string | null;
  reason?: string | null;
  incidentRef?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditQuery {
  groupId?: string;
  systemId?: string;
  commandId?: string;
  actor?: string;
  action?: string;
  from?: Date;
  to?: Date;
  /** Return entries older than this id (the `nextCursor` of the previous page). */
  before?: number;
  limit: number;
}

export interface AuditEntryView {
  id: number;
  occurredAt: string;
  actor: string;
  action: string;
  groupId: string | null;
  systemId: string | null;
  commandId: string | null;
  reason: string | null;
  incidentRef: string | null;
  details: Record<string, unknown>;
}

/**
 * The append-only history. Entries are written inside the transaction of the change they record,
 * so a change and its entry exist together or not at all. The table refuses updates and deletes.
 */
@Injectable()
export class AuditLog {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async append(manager: EntityManager, entries: AuditEntryInput | AuditEntryInput[]): Promise<void> {
    const list = Array.isArray(entries) ? entries : [entries];
    if (list.length === 0) return;
    await manager.insert(
      AuditEntryEntity,
      list.map((entry) => ({
        actor: entry.actor,
        action: entry.action,
        groupId: entry.groupId ?? null,
        systemId: entry.systemId ?? null,
        commandId: entry.commandId ?? null,
        reason: entry.reason ?? null,
        incidentRef: entry.incidentRef ?? null,
        details: entry.details ?? {},
      })) as QueryDeepPartialEntity<AuditEntryEntity>[],
    );
  }

  /** Newest first, keyset-paginated by id. */
  async find(query: AuditQuery): Promise<{ items: AuditEntryView[]; nextCursor: string | null }> {
    const builder = this.dataSource.getRepository(AuditEntryEntity).createQueryBuilder('entry');
    if (query.groupId) builder.andWhere('entry.group_id = :groupId', { groupId: query.groupId });
    if (query.systemId) builder.andWhere('entry.system_id = :systemId', { systemId: query.systemId });
    if (query.commandId) builder.andWhere('entry.command_id = :commandId', { commandId: query.commandId });
    if (query.actor) builder.andWhere('entry.actor = :actor', { actor: query.actor });
    if (query.action) builder.andWhere('entry.action = :action', { action: query.action });
    if (query.from) builder.andWhere('entry.occurred_at >= :from', { from: query.from });
    if (query.to) builder.andWhere('entry.occurred_at < :to', { to: query.to });
    if (query.before !== undefined) builder.andWhere('entry.id < :before', { before: query.before });
    const rows = await builder
      .orderBy('entry.id', 'DESC')
      .limit(query.limit + 1)
      .getMany();
    const page = rows.slice(0, query.limit);
    return {
      items: page.map((row) => ({
        id: Number(row.id),
        occurredAt: row.occurredAt.toISOString(),
        actor: row.actor,
        action: row.action,
        groupId: row.groupId,
        systemId: row.systemId,
        commandId: row.commandId,
        reason: row.reason,
        incidentRef: row.incidentRef,
        details: row.details,
      })),
      nextCursor: rows.length > query.limit ? String(page[page.length - 1].id) : null,
    };
  }
}
