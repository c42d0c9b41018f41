import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { publicKeyPem } from '@portcullis/contracts';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { DataSource, type EntityManager } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import {
  ChainVerifier,
  exportJsonLines,
  GENESIS_HASH,
  signCheckpoint,
  trustKeysById,
  type AuditCheckpoint,
  type ChainEntry,
  type ChainItem,
  type ChainReport,
  type ExportKey,
  type TrustedKeys,
} from './audit-chain';
import { csvEntryLine, csvHeaderLine } from './audit-csv';

/** Arbitrary constant naming the lock that makes one instance at a time write checkpoints. */
export const CHECKPOINT_LOCK_KEY = 7_346_112_002;
const BATCH_SIZE = 1000;
const LOWEST_SEQ = '-9223372036854775808';

export interface AuditVerification extends ChainReport {
  verifiedAt: string;
}

interface EntryRow {
  seq: string;
  occurred_at: Date;
  actor: string;
  action: string;
  group_id: string | null;
  system_id: string | null;
  command_id: string | null;
  reason: string | null;
  incident_ref: string | null;
  source_address: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

interface CheckpointRow {
  seq: string;
  head_hash: string;
  created_at: Date;
  key_id: string;
  signature: string;
}

const entryOf = (row: EntryRow): ChainEntry => ({
  seq: Number(row.seq),
  occurredAt: row.occurred_at.toISOString(),
  actor: row.actor,
  action: row.action,
  groupId: row.group_id,
  systemId: row.system_id,
  commandId: row.command_id,
  reason: row.reason,
  incidentRef: row.incident_ref,
  sourceAddress: row.source_address,
  details: row.details,
  prevHash: row.prev_hash,
  hash: row.hash,
});

const checkpointOf = (row: CheckpointRow): AuditCheckpoint => ({
  seq: Number(row.seq),
  headHash: row.head_hash,
  createdAt: row.created_at.toISOString(),
  keyId: row.key_id,
  signature: row.signature,
});

/**
 * Reads the chain back (in batches, for verification and export) and signs its head into checkpoints
 * periodically. With several replicas, an advisory lock makes one write each checkpoint.
 */
@Injectable()
export class AuditTrail implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(AuditTrail.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopped = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.warnIfHistoryIsWritable();
    this.timer = setInterval(() => void this.tick(), this.config.auditCheckpointIntervalMs ?? 60_000);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** The public keys that verify checkpoints and exports. */
  publicKeys(): ExportKey[] {
    return [{ keyId: this.config.signing.keyId, algorithm: 'Ed25519', publicKeyPem: publicKeyPem(this.config.signing.privateKey) }];
  }

  trustedKeys(): TrustedKeys {
    const keys = new Map<string, KeyObject>([[this.config.signing.keyId, createPublicKey(this.config.signing.privateKey)]]);
    return trustKeysById(keys);
  }

  /** Where the chain ends, as recorded with the last append. */
  async head(manager: EntityManager = this.dataSource.manager): Promise<{ seq: number; hash: string }> {
    const rows: { seq: string; hash: string }[] = await manager.query('SELECT seq, hash FROM audit_chain_head');
    return rows.length ? { seq: Number(rows[0].seq), hash: rows[0].hash } : { seq: 0, hash: GENESIS_HASH };
  }

  /**
   * Entries in seq order, each checkpoint right after the entry at its seq, up to `upTo` (inclusive);
   * `after`: start after this seq. Reads batch by batch: memory stays constant whatever the length.
   */
  async *items(options: { upTo: number; after?: number; manager?: EntityManager }): AsyncGenerator<ChainItem> {
    const manager = options.manager ?? this.dataSource.manager;
    let after: string | number = options.after ?? LOWEST_SEQ;
    for (;;) {
      const rows: EntryRow[] = await manager.query(
        `SELECT seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref, source_address,
                details, prev_hash, hash
         FROM audit_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT ${BATCH_SIZE}`,
        [after, options.upTo],
      );
      if (rows.length === 0) break;
      const batchEnd = rows[rows.length - 1].seq;
      // At most one checkpoint per seq: never more than a batch of them.
      const checkpoints = (
        (await manager.query(
          `SELECT seq, head_hash, created_at, key_id, signature FROM audit_checkpoints
           WHERE seq > $1 AND seq <= $2 ORDER BY seq, id`,
          [after, batchEnd],
        )) as CheckpointRow[]
      ).map(checkpointOf);
      let next = 0;
      for (const row of rows) {
        const entry = entryOf(row);
        while (next < checkpoints.length && checkpoints[next].seq < entry.seq) {
          yield { kind: 'checkpoint', checkpoint: checkpoints[next++] };
        }
        yield { kind: 'entry', entry };
        while (next < checkpoints.length && checkpoints[next].seq === entry.seq) {
          yield { kind: 'checkpoint', checkpoint: checkpoints[next++] };
        }
      }
      while (next < checkpoints.length) yield { kind: 'checkpoint', checkpoint: checkpoints[next++] };
      after = batchEnd;
      if (rows.length < BATCH_SIZE) break;
    }
    // Checkpoints beyond the last entry (the entries they cover are gone).
    for (;;) {
      const rows: CheckpointRow[] = await manager.query(
        `SELECT seq, head_hash, created_at, key_id, signature FROM audit_checkpoints
         WHERE seq > $1 AND seq <= $2 ORDER BY seq, id LIMIT ${BATCH_SIZE}`,
        [after, options.upTo],
      );
      for (const row of rows) yield { kind: 'checkpoint', checkpoint: checkpointOf(row) };
      if (rows.length < BATCH_SIZE) break;
      after = rows[rows.length - 1].seq;
    }
  }

  /**
   * Recomputes the whole chain from the first entry up to the head recorded when verification started
   * (later appends are left for the next run), checks every checkpoint's signature and head hash, and that
   * the recorded head is where the entries end.
   */
  async verify(): Promise<AuditVerification> {
    const head = await this.head();
    const verifier = new ChainVerifier(this.trustedKeys());
    for await (const item of this.items({ upTo: head.seq })) {
      if (item.kind === 'entry') verifier.addEntry(item.entry);
      else verifier.addCheckpoint(item.checkpoint);
    }
    return { ...verifier.finish(head), verifiedAt: new Date().toISOString() };
  }

  /**
   * The JSON Lines export, line by line: a header (format, time, public keys), every entry and checkpoint
   * up to the head recorded when the export started, in chain order, and a signed trailer. The whole
   * history from seq 1 is exported: that is what an offline verifier can check from genesis.
   */
  async *exportJsonLines(): AsyncGenerator<string> {
    const exportedAt = new Date().toISOString();
    const head = await this.head();
    yield* exportJsonLines(this.items({ upTo: head.seq }), { exportedAt, keys: this.publicKeys(), signing: this.config.signing });
  }

  /** The CSV export (for spreadsheets): one row per entry with its seq, prev_hash and hash. */
  async *exportCsv(): AsyncGenerator<string> {
    const head = await this.head();
    yield csvHeaderLine();
    for await (const item of this.items({ upTo: head.seq })) {
      if (item.kind === 'entry') yield csvEntryLine(item.entry);
    }
  }

  /**
   * Signs the current head, if it moved since the last checkpoint and the entries since that checkpoint
   * still chain onto it. Returns the checkpoint written, or null (nothing new, another instance is
   * writing, or the chain is broken — which is logged and never signed).
   */
  async writeCheckpoint(): Promise<AuditCheckpoint | null> {
    return this.dataSource.transaction('READ COMMITTED', async (manager) => {
      const [{ locked }]: { locked: boolean }[] = await manager.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [
        CHECKPOINT_LOCK_KEY,
      ]);
      if (!locked) return null;
      const head = await this.head(manager);
      const previous: CheckpointRow[] = await manager.query(
        'SELECT seq, head_hash, created_at, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1',
      );
      const from = previous.length ? { seq: Number(previous[0].seq), hash: previous[0].head_hash } : { seq: 0, hash: GENESIS_HASH };
      if (head.seq <= from.seq) return null;
      const verifier = new ChainVerifier(this.trustedKeys(), from);
      for await (const item of this.items({ after: from.seq, upTo: head.seq, manager })) {
        if (item.kind === 'entry') verifier.addEntry(item.entry);
      }
      const segment = verifier.finish(head);
      if (!segment.intact) {
        const problem = segment.firstBreak!;
        this.log.error(
          `audit chain broken at seq ${problem.seq} (${problem.reason}: ${problem.detail}); not signing a checkpoint — run GET /api/v1/audit/verify`,
        );
        return null;
      }
      const checkpoint = signCheckpoint({ seq: head.seq, headHash: head.hash, createdAt: new Date().toISOString() }, this.config.signing);
      await manager.query(
        'INSERT INTO audit_checkpoints (seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)',
        [checkpoint.seq, checkpoint.headHash, checkpoint.createdAt, checkpoint.keyId, checkpoint.signature],
      );
      return checkpoint;
    });
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.running) return;
    this.running = this.writeCheckpoint()
      .catch((error: unknown) => this.log.warn(`audit checkpoint not written: ${(error as Error).message}`))
      .finally(() => {
        this.running = undefined;
      });
    await this.running;
  }

  /** Says so loudly when the service runs as a role that could rewrite history (an owner or superuser). */
  private async warnIfHistoryIsWritable(): Promise<void> {
    try {
      const [row]: { role: string; writable: boolean }[] = await this.dataSource.query(
        `SELECT current_user AS role,
                has_table_privilege('audit_entries', 'UPDATE') OR has_table_privilege('audit_entries', 'DELETE')
                  OR has_table_privilege('audit_entries', 'TRUNCATE') AS writable`,
      );
      if (row?.writable) {
        this.log.warn(
          `the database role "${row.role}" may update or delete audit entries: run the service as a member of ` +
            `portcullis_app (DATABASE_URL) and migrate as the owner (DATABASE_MIGRATION_URL)`,
        );
      }
    } catch (error) {
      this.log.warn(`could not check the database role's privileges: ${(error as Error).message}`);
    }
  }
}
