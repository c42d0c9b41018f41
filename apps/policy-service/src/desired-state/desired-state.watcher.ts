import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Topics, verifyMessage } from '@portcullis/contracts';
import type { Consumer, Kafka } from 'kafkajs';
import { createHash, createPublicKey } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { KAFKA } from '../kafka/kafka.module';
import { PublishedRecords } from '../outbox/published-records';
import { DesiredStateReissuer } from './desired-state.reissuer';

/** A record of the decisions topic as the watch sees it. */
export interface WatchedRecord {
  key: string | null;
  value: Buffer | null;
  partition: number;
  offset: string;
}

/** Why a record is not the latest decision the service published for its key. */
export type ForeignRecordReason = 'tombstone' | 'not-signed-by-the-service' | 'under-another-key' | 'older-than-the-last-published';

export interface ForeignRecord {
  systemId: string;
  reason: ForeignRecordReason;
  record: WatchedRecord;
  claimedMessageId?: string;
}

/**
 * Judges the records of one key in topic order. The service's own decisions for a key are published in
 * the order they were signed (each decision locks its system), so their `occurredAt` only grows; a record
 * that is not signed by the service, or a genuine but older one appended after a newer one (a replay), or
 * a tombstone, is foreign.
 */
export class DecisionStreamJudge {
  private readonly latest = new Map<string, { occurredAt: number; messageId: string }>();

  /** `isServiceRecord(raw, bytes)`: whether the record is signed by the service (it may know its bytes). */
  constructor(private readonly isServiceRecord: (raw: unknown, bytes: Buffer) => boolean) {}

  judge(record: WatchedRecord): ForeignRecord | null {
    const systemId = record.key;
    if (systemId === null) return null; // no key: compaction cannot make it any system's decision
    if (record.value === null) return { systemId, reason: 'tombstone', record };
    let raw: unknown;
    try {
      raw = JSON.parse(record.value.toString('utf8'));
    } catch {
      raw = undefined;
    }
    const message = (raw ?? {}) as { messageId?: unknown; occurredAt?: unknown; data?: { systemId?: unknown } };
    const claimedMessageId = typeof message.messageId === 'string' ? message.messageId.slice(0, 100) : undefined;
    if (!this.isServiceRecord(raw, record.value)) return { systemId, reason: 'not-signed-by-the-service', record, claimedMessageId };
    // A genuine decision for another system, re-keyed: compaction would make it this system's last record.
    if (message.data?.systemId !== systemId) return { systemId, reason: 'under-another-key', record, claimedMessageId };
    const occurredAt = Date.parse(String(message.occurredAt));
    const last = this.latest.get(systemId);
    if (last && occurredAt < last.occurredAt) return { systemId, reason: 'older-than-the-last-published', record, claimedMessageId };
    this.latest.set(systemId, { occurredAt, messageId: String(message.messageId) });
    return null;
  }
}

/**
 * Watches the decisions topic for records the service did not publish as the latest decision of a system
 * — forged ones, genuine old ones appended again, tombstones. Adapters already refuse those; the danger is
 * compaction: it keeps only the LAST record of each key, so such a record could become the only decision
 * a fresh adapter (new replica, lost volume) ever sees — a replayed genuine restore would restore access.
 * So the watch records a security alert and re-publishes the system's current decision at once, which
 * makes the latest record genuine again.
 *
 * It reads the topic from the beginning on every start, without committing (like adapters): the judge
 * needs the whole order. Records read while catching up are judged, but acted on only if they are still
 * a key's last foreign record when the catch-up ends — what an earlier run already repaired is not
 * repaired or reported again.
 */
@Injectable()
export class DesiredStateWatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(DesiredStateWatcher.name);
  private consumer?: Consumer;
  private readonly judge: DecisionStreamJudge;
  /** Partitions still catching up, with the offset that ends the catch-up. */
  private catchUp = new Map<number, bigint>();
  /** During catch-up: each key's foreign record, if its last record so far is one. */
  private readonly pending = new Map<string, ForeignRecord>();

  constructor(
    @Inject(KAFKA) private readonly kafka: Kafka,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly reissuer: DesiredStateReissuer,
    private readonly auditLog: AuditLog,
    private readonly published: PublishedRecords,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {
    const ownKey = createPublicKey(config.signing.privateKey);
    // The relay's own records are recognised by their bytes (Ed25519 verification costs ~0.15 ms a record);
    // everything else, including records another replica published, has its signature checked.
    this.judge = new DecisionStreamJudge(
      (raw, bytes) => published.published(bytes) || verifyMessage(raw, (keyId) => (keyId === config.signing.keyId ? ownKey : undefined)).valid,
    );
  }

  async onApplicationBootstrap(): Promise<void> {
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      const offsets = await admin.fetchTopicOffsets(Topics.systemAccess);
      this.catchUp = new Map(offsets.filter((entry) => BigInt(entry.high) > 0n).map((entry) => [entry.partition, BigInt(entry.high)]));
    } finally {
      await admin.disconnect();
    }
    const consumer = this.kafka.consumer({
      groupId: `${this.config.consumerGroupId}.desired-state-watch`,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 1_000,
      retry: { initialRetryTime: 300, retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
    });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ partition, message }) =>
        this.watch({ key: message.key?.toString('utf8') ?? null, value: message.value, partition, offset: message.offset }),
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.consumer?.disconnect();
  }

  private async watch(record: WatchedRecord): Promise<void> {
    const foreign = this.judge.judge(record);
    const catchingUp = this.catchUp.has(record.partition);
    if (catchingUp) {
      if (record.key !== null) {
        if (foreign) this.pending.set(record.key, foreign);
        else this.pending.delete(record.key);
      }
      if (BigInt(record.offset) + 1n >= this.catchUp.get(record.partition)!) {
        this.catchUp.delete(record.partition);
        if (this.catchUp.size === 0) await this.repair([...this.pending.values()]);
      }
      return;
    }
    if (foreign) await this.repair([foreign]);
  }

  /** Reports each foreign record of a registered system, and re-publishes those systems' current decisions. */
  private async repair(records: readonly ForeignRecord[]): Promise<void> {
    this.pending.clear();
    if (records.length === 0) return;
    const ids = [...new Set(records.map((record) => record.systemId))];
    const known: { id: string }[] = await this.dataSource.query('SELECT id FROM systems WHERE id = ANY($1::text[])', [ids]);
    const registered = new Set(known.map((row) => row.id));
    const relevant = records.filter((record) => registered.has(record.systemId));
    if (relevant.length === 0) return;
    await this.dataSource.transaction(async (manager) => {
      const entries = [];
      for (const foreign of relevant) {
        const { partition, offset } = foreign.record;
        const messageId = alertIdOf(partition, offset);
        const detail = `record ${partition}/${offset} of ${Topics.systemAccess} for "${foreign.systemId}": ${describe(foreign.reason)}; the current decision is published again over it`;
        const inserted: unknown[] = await manager.query(
          `INSERT INTO security_alerts (message_id, adapter_id, system_id, reason, severity, verified, detail, occurred_at, payload)
           VALUES ($1, 'policy-service', $2, $3, 'high', true, $4, now(), $5)
           ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
          [messageId, foreign.systemId, foreign.reason, detail, JSON.stringify({ partition, offset, claimedMessageId: foreign.claimedMessageId ?? null })],
        );
        if (inserted.length === 0) continue;
        this.log.error(`security alert: ${detail}`);
        entries.push({
          actor: 'system:desired-state-watch',
          action: 'security.alert',
          systemId: foreign.systemId,
          reason: `${foreign.reason}: ${detail}`,
          details: { severity: 'high', alertReason: foreign.reason, record: { partition, offset, claimedMessageId: foreign.claimedMessageId ?? null } },
        });
      }
      await this.auditLog.append(manager, entries);
    });
    const reissued = await this.reissuer.reissueNow([...new Set(relevant.map((record) => record.systemId))]);
    this.log.warn(`re-published the current decision of ${reissued} system(s) over records the service did not publish`);
  }
}

function describe(reason: ForeignRecordReason): string {
  switch (reason) {
    case 'tombstone':
      return 'a tombstone, which compaction would turn into no decision at all';
    case 'not-signed-by-the-service':
      return 'not signed by the policy service';
    case 'under-another-key':
      return "a genuine decision for another system, published under this system's key";
    case 'older-than-the-last-published':
      return 'a genuine but older decision appended again after a newer one (a replay)';
  }
}

/** A stable id for the alert about one record, so a restart or a second replica does not report it twice. */
function alertIdOf(partition: number, offset: string): string {
  const hex = createHash('sha256').update(`${Topics.systemAccess}/${partition}/${offset}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
