import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Topics, verifyMessage } from '@portcullis/contracts';
import { partitionForRoute, replaceWhenAbandoned } from '@portcullis/kafka';
import type { Consumer, Kafka } from 'kafkajs';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { DataSource } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { KAFKA } from '../kafka/kafka.module';
import { PublishedRecords } from '../outbox/published-records';
import { explainRefusedCopy } from '../outbox/uncertain-sends';
import { DesiredStateReissuer } from './desired-state.reissuer';

/** A record of the decisions topic as the watch sees it. */
export interface WatchedRecord {
  key: string | null;
  value: Buffer | null;
  partition: number;
  offset: string;
}

/**
 * Why a record is not the latest decision the service published for its key where that key's adapter
 * reads it. `misrouted`: the record sits in a partition that is not its system's route (the partition of
 * its adapter id), which no adapter of the system reads — whatever else is wrong with it (`alsoFound`).
 */
export type ForeignRecordReason = 'tombstone' | 'not-signed-by-the-service' | 'under-another-key' | 'older-than-the-last-published' | 'misrouted';

export type ForeignRecordSeverity = 'high' | 'medium';

/** Where a registered system's decisions are routed: its adapter, and that adapter's partition. */
export interface SystemRoute {
  adapterId: string;
  partition: number;
}

export interface ForeignRecord {
  systemId: string;
  reason: ForeignRecordReason;
  record: WatchedRecord;
  claimedMessageId?: string;
  /**
   * `high`; `medium` only for a misrouted record that is otherwise a genuine decision of the service,
   * under its own key and in order in its partition — what the service published before decisions were
   * routed by adapter (or a misconfigured producer).
   */
  severity: ForeignRecordSeverity;
  /** For a misrouted record: the system's route, and what the record would be judged in it, if anything. */
  route?: SystemRoute;
  alsoFound?: Exclude<ForeignRecordReason, 'misrouted'>;
}

/**
 * Judges the records of one key in one partition in topic order. The service's own decisions for a key are
 * published in the order they were signed (each decision locks its system), so within a partition their
 * `occurredAt` only grows; a record that is not signed by the service, or a genuine but older one appended
 * after a newer one (a replay), or a tombstone, is foreign.
 *
 * Partitions are judged apart: one key's records can sit in two partitions (written before and after
 * decisions were routed by adapter, or a copy written elsewhere), and partitions are read in no particular
 * order relative to each other, so "older than the last one" only means something within a partition.
 * Given the system's route, a record in any other partition is `misrouted`: no adapter of the system
 * reads it, so it is harmless to enforcement but never buried by a re-issue either.
 */
export class DecisionStreamJudge {
  /** `occurredAt` of the latest genuine decision of each key in each partition (`partition/key`). */
  private readonly latest = new Map<string, number>();

  /** `isServiceRecord(raw, bytes)`: whether the record is signed by the service (it may know its bytes). */
  constructor(private readonly isServiceRecord: (raw: unknown, bytes: Buffer) => boolean) {}

  /** `route`: where the key's system's decisions are routed, when it is a registered system. */
  judge(record: WatchedRecord, route?: SystemRoute): ForeignRecord | null {
    const systemId = record.key;
    if (systemId === null) return null; // no key: compaction cannot make it any system's decision
    const { found, claimedMessageId } = this.judgeInPartition(record, systemId);
    if (route === undefined || record.partition === route.partition) {
      return found ? { systemId, reason: found, record, claimedMessageId, severity: 'high' } : null;
    }
    return { systemId, reason: 'misrouted', record, claimedMessageId, severity: found ? 'high' : 'medium', route, alsoFound: found ?? undefined };
  }

  private judgeInPartition(
    record: WatchedRecord,
    systemId: string,
  ): { found: Exclude<ForeignRecordReason, 'misrouted'> | null; claimedMessageId?: string } {
    if (record.value === null) return { found: 'tombstone' };
    let raw: unknown;
    try {
      raw = JSON.parse(record.value.toString('utf8'));
    } catch {
      raw = undefined;
    }
    const message = (raw ?? {}) as { messageId?: unknown; occurredAt?: unknown; data?: { systemId?: unknown } };
    const claimedMessageId = typeof message.messageId === 'string' ? message.messageId.slice(0, 100) : undefined;
    if (!this.isServiceRecord(raw, record.value)) return { found: 'not-signed-by-the-service', claimedMessageId };
    // A genuine decision for another system, re-keyed: compaction would make it this system's last record.
    if (message.data?.systemId !== systemId) return { found: 'under-another-key', claimedMessageId };
    const occurredAt = Date.parse(String(message.occurredAt));
    const slot = `${record.partition}/${systemId}`;
    const last = this.latest.get(slot);
    if (last !== undefined && occurredAt < last) return { found: 'older-than-the-last-published', claimedMessageId };
    this.latest.set(slot, occurredAt);
    return { found: null, claimedMessageId };
  }
}

/**
 * Watches the decisions topic for records the service did not publish as the latest decision of a system
 * — forged ones, genuine old ones appended again, tombstones. Adapters already refuse those; the danger is
 * compaction: it keeps only the LAST record of each key (in each partition), so such a record could become
 * the only decision a fresh adapter (new replica, lost volume) ever sees — a replayed genuine restore would
 * restore access. So the watch records a security alert and re-publishes the system's current decision at
 * once, which makes the latest record in the system's partition genuine again.
 *
 * Decisions are routed by adapter (a system's records go to the partition of its adapter id, which is all
 * its adapter reads). A record of a registered system in any other partition is `misrouted`: no adapter of
 * the system reads it, and a re-issue (which goes to the route) cannot bury it, so it is reported — `high`
 * when it is not the service's own, `medium` for a genuine decision (written before decisions were routed,
 * or by a misconfigured producer) — and nothing is re-published for it.
 *
 * It reads the whole topic from the beginning on every start, without committing (like adapters): the
 * judge needs the whole order. Every replica (every process start) has a consumer group of its own, so
 * each reads every partition; alerts are keyed by partition and offset, so replicas and restarts do not
 * report a record twice. Records read while catching up are judged, but acted on only if they are still
 * the last foreign record of their key in their partition when the catch-up ends — what an earlier run
 * already repaired is not repaired or reported again — except misrouted records that are not the service's
 * own: no re-issue buries those, so each one is reported.
 */
@Injectable()
export class DesiredStateWatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(DesiredStateWatcher.name);
  private consumer?: Consumer;
  private stopped = false;
  private readonly judge: DecisionStreamJudge;
  /** The topic's partition count (never changes for a routed topic): a route is a partition of it. */
  private partitionCount = 0;
  /** Registered systems' routes (a system's adapter never changes, so neither does its route). */
  private readonly routes = new Map<string, SystemRoute>();
  /** Partitions still catching up, with the offset that ends the catch-up. */
  private catchUp = new Map<number, bigint>();
  /** During catch-up: each key's foreign record in each partition (`partition/key`), if its last record there is one. */
  private readonly pending = new Map<string, ForeignRecord>();
  /** During catch-up: misrouted records that are not the service's own, every one (no re-issue buries them). */
  private readonly misroutedDuringCatchUp: ForeignRecord[] = [];
  /** Per partition, the offset of the last record judged: what a re-read after a rejoin skips. */
  private readonly judgedUpTo = new Map<number, bigint>();

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
      this.partitionCount = offsets.length;
      this.catchUp = new Map(offsets.filter((entry) => BigInt(entry.high) > 0n).map((entry) => [entry.partition, BigInt(entry.high)]));
    } finally {
      await admin.disconnect();
    }
    await this.startConsumer();
  }

  /** The watch's consumer, consuming; again after kafkajs gave up on the one before (judged records are skipped). */
  private async startConsumer(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: watchGroupId(this.config.consumerGroupId),
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 1_000,
      retry: { initialRetryTime: 300, retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 30_000 },
    });
    this.consumer = consumer;
    // Without it the watch would stop for the life of the process, silently.
    replaceWhenAbandoned(consumer, () => this.startConsumer(), {
      isStopped: () => this.stopped,
      onAbandoned: (error) => this.log.error(`kafkajs gave up on the decisions watch's consumer (${error.message}); starting a new one`),
      onReplaceFailed: (error, attempt) => this.log.error(`could not start a new decisions watch consumer (attempt ${attempt}): ${(error as Error).message}`),
    });
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        const records: WatchedRecord[] = batch.messages.map((message) => ({
          key: message.key?.toString('utf8') ?? null,
          value: message.value,
          partition: batch.partition,
          offset: message.offset,
        }));
        await this.learnRoutes(records);
        for (const record of records) {
          // Nothing is committed, so after a rejoin (a session timeout, a rebalance) the consumer reads the
          // partition from its beginning again: records judged before are skipped, not judged as new.
          const judgedUpTo = this.judgedUpTo.get(record.partition);
          if (judgedUpTo === undefined || BigInt(record.offset) > judgedUpTo) {
            await this.watch(record);
            this.judgedUpTo.set(record.partition, BigInt(record.offset));
          }
          resolveOffset(record.offset);
          await heartbeat().catch(() => undefined); // throttled by kafkajs; best effort
        }
      },
    });
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    await this.consumer?.disconnect();
  }

  /** Looks up the routes of the registered systems among these records' keys that it does not know yet. */
  private async learnRoutes(records: readonly WatchedRecord[]): Promise<void> {
    if (this.partitionCount === 0) return;
    const unknown = [...new Set(records.map((record) => record.key).filter((key): key is string => key !== null && !this.routes.has(key)))];
    if (unknown.length === 0) return;
    const rows: { id: string; adapter_id: string }[] = await this.dataSource.query('SELECT id, adapter_id FROM systems WHERE id = ANY($1::text[])', [
      unknown,
    ]);
    for (const row of rows) this.routes.set(row.id, { adapterId: row.adapter_id, partition: partitionForRoute(row.adapter_id, this.partitionCount) });
  }

  private async watch(record: WatchedRecord): Promise<void> {
    const foreign = this.judge.judge(record, record.key === null ? undefined : this.routes.get(record.key));
    const catchingUp = this.catchUp.has(record.partition);
    if (catchingUp) {
      if (record.key !== null) {
        const slot = `${record.partition}/${record.key}`;
        if (foreign) this.pending.set(slot, foreign);
        else this.pending.delete(slot);
        if (foreign?.reason === 'misrouted' && foreign.severity === 'high') this.misroutedDuringCatchUp.push(foreign);
      }
      if (BigInt(record.offset) + 1n >= this.catchUp.get(record.partition)!) {
        if (this.catchUp.size === 1) {
          const found = new Map<string, ForeignRecord>();
          for (const each of [...this.misroutedDuringCatchUp, ...this.pending.values()]) found.set(`${each.record.partition}/${each.record.offset}`, each);
          // If the repair fails, this record comes again (it is not marked judged) with the findings kept.
          await this.repair([...found.values()]);
          this.pending.clear();
          this.misroutedDuringCatchUp.length = 0;
        }
        this.catchUp.delete(record.partition);
      }
      return;
    }
    if (foreign) await this.repair([foreign]);
  }

  /**
   * Reports each foreign record of a registered system, and re-publishes the current decision of the
   * systems with a foreign record in their route (a misrouted record is only reported: no adapter reads it,
   * and a re-issue, which goes to the route, could not bury it).
   */
  private async repair(records: readonly ForeignRecord[]): Promise<void> {
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
        const detail = `record ${partition}/${offset} of ${Topics.systemAccess} for "${foreign.systemId}": ${detailOf(foreign)}`;
        const record = {
          partition,
          offset,
          claimedMessageId: foreign.claimedMessageId ?? null,
          ...(foreign.route ? { routePartition: foreign.route.partition, adapterId: foreign.route.adapterId, alsoFound: foreign.alsoFound ?? null } : {}),
        };
        // A genuine older decision after a newer one is also what a repeated send of both leaves behind.
        const explanation =
          foreign.reason === 'older-than-the-last-published' ? await explainRefusedCopy(manager, foreign.claimedMessageId, foreign.systemId) : null;
        const inserted: unknown[] = await manager.query(
          `INSERT INTO security_alerts (message_id, adapter_id, system_id, reason, severity, verified, detail, occurred_at, payload, explanation)
           VALUES ($1, 'policy-service', $2, $3, $4, true, $5, now(), $6, $7)
           ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
          [messageId, foreign.systemId, foreign.reason, foreign.severity, detail, JSON.stringify(record), explanation],
        );
        if (inserted.length === 0) continue;
        if (foreign.severity === 'medium' || explanation) this.log.warn(`security alert (${foreign.severity}): ${detail}${explanation ? ` — explained: ${explanation}` : ''}`);
        else this.log.error(`security alert: ${detail}`);
        entries.push({
          actor: 'system:desired-state-watch',
          action: 'security.alert',
          systemId: foreign.systemId,
          reason: `${foreign.reason}: ${detail}`,
          details: { severity: foreign.severity, alertReason: foreign.reason, record, ...(explanation ? { explanation } : {}) },
        });
      }
      await this.auditLog.append(manager, entries);
    });
    const toReissue = [...new Set(relevant.filter((record) => record.reason !== 'misrouted').map((record) => record.systemId))];
    if (toReissue.length === 0) return;
    const reissued = await this.reissuer.reissueNow(toReissue);
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
    case 'misrouted':
      return "in a partition that is not the system's route (the partition of its adapter), which no adapter of the system reads";
  }
}

/** What the alert says about the record. */
function detailOf(foreign: ForeignRecord): string {
  if (foreign.reason !== 'misrouted' || !foreign.route) return `${describe(foreign.reason)}; the current decision is published again over it`;
  const where = `in partition ${foreign.record.partition}, not in partition ${foreign.route.partition} where the decisions of its adapter "${foreign.route.adapterId}" are routed`;
  if (!foreign.alsoFound) {
    return `a genuine decision of the policy service ${where}: written before decisions were routed by adapter, or by a misconfigured producer; adapters do not read it`;
  }
  return `${describe(foreign.alsoFound)}, ${where}; adapters do not read it, and publishing the current decision again cannot bury it`;
}

/**
 * The watch's consumer group: one per process start (host, pid, random), so every replica reads every
 * partition — the judge needs all of a key's records, and the partitions of a shared group would be split
 * between replicas. Nothing is committed, and Kafka drops an empty group without offsets, so old ones do
 * not pile up. It starts with `consumerGroupId`, so the policy service's PREFIXED group ACL covers it.
 */
export function watchGroupId(consumerGroupId: string): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 63);
  return `${consumerGroupId}.desired-state-watch.${host}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** A stable id for the alert about one record, so a restart or a second replica does not report it twice. */
function alertIdOf(partition: number, offset: string): string {
  const hex = createHash('sha256').update(`${Topics.systemAccess}/${partition}/${offset}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
