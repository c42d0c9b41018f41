import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { AuditEntryEntity } from '../database/entities';
import { chainEntryTemplate, type ChainEntryContent, type ChainEntryTemplate } from './audit-chain';
import { currentRequestCredential, type RequestCredential } from './request-credential';

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
  /** The client address the request came from (e.g. `request.ip`), when the change was made through the API. */
  sourceAddress?: string | null;
  /**
   * What changed. Convention: `details.before` and `details.after` hold the relevant state before and after the
   * change (e.g. `{ before: { state: 'active' }, after: { state: 'revoked' } }`); other keys add context.
   */
  details?: Record<string, unknown>;
  /**
   * How the caller authenticated, when the entry is appended outside its request (decisions of several
   * requests recorded in one transaction); null: not through the API. Absent: the request being handled.
   */
  credential?: RequestCredential | null;
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
  /** Position in the hash chain (1, 2, 3, ... in commit order). */
  seq: number;
  occurredAt: string;
  actor: string;
  action: string;
  groupId: string | null;
  systemId: string | null;
  commandId: string | null;
  reason: string | null;
  incidentRef: string | null;
  sourceAddress: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/**
 * The append-only history, a SHA-256 hash chain (see audit-chain.ts). Entries are written inside the
 * transaction of the change they record, so a change and its entry exist together or not at all. The
 * application's database role may only read and insert entries; triggers refuse updates and deletes.
 */
@Injectable()
export class AuditLog {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * Appends entries to the chain, in the caller's transaction: they exist if and only if it commits.
   *
   * Each entry is written as pending, with its canonical JSON cut where its time and sequence number go;
   * the database links the transaction's entries into the chain when it commits (migration
   * `AuditLinkedAtCommit`), so the chain head's lock is held only inside that commit and appending waits for
   * nothing. Entries appear in the chain in the order they were appended; an append's entries share one time,
   * taken at commit.
   */
  async append(manager: EntityManager, entries: AuditEntryInput | AuditEntryInput[]): Promise<void> {
    const list = Array.isArray(entries) ? entries : [entries];
    if (list.length === 0) return;
    if (!manager.queryRunner?.isTransactionActive) {
      throw new Error('AuditLog.append must run inside the transaction of the change it records');
    }
    const credential = currentRequestCredential();
    const rows = list.map((entry) => {
      const content = {
        actor: wellFormed(entry.actor),
        action: wellFormed(entry.action),
        groupId: nullableText(entry.groupId),
        systemId: nullableText(entry.systemId),
        commandId: canonicalUuid(entry.commandId),
        reason: nullableText(entry.reason),
        incidentRef: nullableText(entry.incidentRef),
        sourceAddress: nullableText(entry.sourceAddress),
        details: storedJson(withCredential(entry, entry.credential === undefined ? credential : (entry.credential ?? undefined))),
      };
      return toPendingRow(content, chainEntryTemplate(content));
    });
    await manager.query('INSERT INTO audit_pending (entries) VALUES ($1::json)', [JSON.stringify(rows)]);
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
        seq: row.seq,
        occurredAt: row.occurredAt.toISOString(),
        actor: row.actor,
        action: row.action,
        groupId: row.groupId,
        systemId: row.systemId,
        commandId: row.commandId,
        reason: row.reason,
        incidentRef: row.incidentRef,
        sourceAddress: row.sourceAddress,
        details: row.details,
        prevHash: row.prevHash,
        hash: row.hash,
      })),
      nextCursor: rows.length > query.limit ? String(page[page.length - 1].id) : null,
    };
  }
}

/**
 * The string PostgreSQL will give back: UTF-8 cannot hold a lone surrogate, which would otherwise be
 * stored as U+FFFD and no longer match the hash.
 */
function wellFormed(value: string): string {
  return Buffer.from(value, 'utf8').toString('utf8');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a text is a UUID in the layout PostgreSQL gives back (any letter case). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/**
 * The text PostgreSQL's `uuid` column gives back, lower case: the hash must cover what verification reads.
 * Anything else is a caller's mistake (validated input is a UUID already).
 */
function canonicalUuid(value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  if (!isUuid(value)) throw new Error(`an audit entry's commandId must be a UUID, not ${JSON.stringify(value)}`);
  return value.toLowerCase();
}

function nullableText(value: string | null | undefined): string | null {
  return value === null || value === undefined ? null : wellFormed(value);
}

/** The JSON value jsonb will give back (undefined members dropped, dates as strings, well-formed text). */
function storedJson(details: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(details), (_key, value: unknown) => (typeof value === 'string' ? wellFormed(value) : value)) as Record<
    string,
    unknown
  >;
}

/** A pending entry as the database reads it (`audit_pending_entry`, column names). */
function toPendingRow(content: Omit<ChainEntryContent, 'seq' | 'occurredAt'>, template: ChainEntryTemplate): Record<string, unknown> {
  return {
    actor: content.actor,
    action: content.action,
    group_id: content.groupId,
    system_id: content.systemId,
    command_id: content.commandId,
    reason: content.reason,
    incident_ref: content.incidentRef,
    source_address: content.sourceAddress,
    details: content.details,
    canonical_head: template.head,
    canonical_middle: template.middle,
    canonical_tail: template.tail,
  };
}

/**
 * An entry of the authenticated caller (`user:…`, in the request it made) says how that caller proved who
 * it is: `details.via` (`sso-token`, `local-token` or `api-key`, with `apiKeyName`). Entries of the system
 * and of adapters, and those written outside a request, are left as they are.
 */
function withCredential(entry: AuditEntryInput, credential: RequestCredential | undefined): Record<string, unknown> {
  const details = entry.details ?? {};
  if (!credential || !entry.actor.startsWith('user:') || 'via' in details) return details;
  return { ...details, ...credential };
}
