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
  checkCheckpointSignature,
  exportJsonLines,
  GENESIS_HASH,
  signCheckpoint,
  trustKeysById,
  type AuditCheckpoint,
  type ChainBreak,
  type ChainEntry,
  type ChainItem,
  type ChainReport,
  type CheckpointWriterProblem,
  type ExportKey,
  type TrustedKeys,
} from './audit-chain';
import { csvEntryLine, csvHeaderLine } from './audit-csv';

/** Arbitrary constant naming the lock that makes one instance at a time write checkpoints. */
export const CHECKPOINT_LOCK_KEY = 7_346_112_002;
const BATCH_SIZE = 1000;
const LOWEST_SEQ = '-9223372036854775808';

/**
 * The checkpoint writer of this process. It remembers how far it has verified the chain (that entry's
 * hash) and the last checkpoint it wrote or verified, and refuses to sign while the database disagrees.
 */
export interface CheckpointWriterState {
  /** Signing: the whole chain verified since this process started, and the database still agrees with it. */
  healthy: boolean;
  /** `verifying`: the whole-chain verification after start-up has not passed yet (nothing is signed before). */
  status: 'verifying' | 'ready' | 'refusing';
  /** The newest checkpoint this process wrote or verified (null: none yet). */
  lastCheckpointSeq: number | null;
  lastCheckpointCreatedAt: string | null;
  /** How far this process has verified the chain, and when it last confirmed that (null: not yet). */
  verifiedSeq: number | null;
  verifiedAt: string | null;
  /** Why it refuses to sign (null when it does not). */
  problem: CheckpointWriterProblem | null;
}

export interface AuditVerification extends ChainReport {
  verifiedAt: string;
  /**
   * The running service's memory, checked against the database: a history rewritten and re-hashed so that it
   * verifies on its own still disagrees with what this process verified or signed before. When it does
   * (and the chain itself verifies), `intact` is false and `firstBreak` is the writer's problem.
   */
  checkpointWriter: CheckpointWriterState;
  /** With `previousSeq` and `previousHeadHash` (a head kept from an earlier export): whether it is still on the chain. */
  previous?: { seq: number; headHash: string; onChain: boolean; actualHash: string | null };
}

/** What a check of the writer established, to remember once its transaction committed. */
type WriterOutcome =
  | { kind: 'busy' }
  | { kind: 'problem'; problem: ChainBreak }
  | { kind: 'ok'; head: { seq: number; hash: string }; newest: AuditCheckpoint | null; written: AuditCheckpoint | null };

/** An `audit_entries` row as `pg` returns it. */
export interface EntryRow {
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

/** An `audit_entries` row as the chain hashes it. */
export const entryOf = (row: EntryRow): ChainEntry => ({
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

const sameCheckpoint = (a: AuditCheckpoint, b: AuditCheckpoint) =>
  a.seq === b.seq && a.headHash === b.headHash && a.createdAt === b.createdAt && a.keyId === b.keyId && a.signature === b.signature;

const problemKey = (problem: ChainBreak) => `${problem.seq}|${problem.reason}|${problem.detail}`;

const CHECKPOINT_COLUMNS = 'seq, head_hash, created_at, key_id, signature';

/**
 * Reads the chain back (in batches, for verification and export) and signs its head into checkpoints
 * periodically. With several replicas, an advisory lock makes one write each checkpoint.
 *
 * The checkpoint writer never launders a rewritten history. SHA-256 needs no key: a database superuser can
 * edit an entry, re-hash everything after it, move the stored head and delete the later checkpoints, and
 * the chain verifies again. So the writer does not take the database's word for where it stands:
 * - after start-up it verifies the whole chain once (in the background, batch by batch) and signs nothing
 *   until that passed;
 * - it remembers, in memory, how far it has verified the chain (that entry's seq and hash) and the newest
 *   checkpoint it wrote or verified, and before each signature checks that the database still has both,
 *   unchanged, and that the newest checkpoint in the database is validly signed and names the hash stored at
 *   its seq; then it verifies only what was appended since, and signs.
 * When the database disagrees it refuses: it logs an ERROR at every attempt and reports the problem in
 * `GET /audit/verify` (and in the trailer of exports), and appends nothing — an `audit.chain-broken` entry
 * would have to be chained onto (and so extend) the very history in question, in the database of whoever
 * rewrote it. The memory dies with the process: a rewrite made while the service is down is caught only
 * against an earlier export (`npm run audit:verify -- new.jsonl --previous old.jsonl`).
 */
@Injectable()
export class AuditTrail implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(AuditTrail.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopped = false;
  /** How far this process has verified the chain: that entry's seq and hash (its memory of the history). */
  private verified?: { seq: number; hash: string; at: string };
  /** The newest checkpoint this process wrote or verified. */
  private known?: AuditCheckpoint;
  private problem: CheckpointWriterProblem | null = null;
  /** The whole-chain verification after start-up, while it runs. */
  private startup?: Promise<boolean>;
  /** Checks of the writer run one at a time (its memory moves only forward, from one check to the next). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.warnIfHistoryIsWritable();
    // In the background: a long history takes a while, and nothing is signed until it passed.
    this.ensureVerified().catch((error: unknown) =>
      this.log.warn(`audit chain not verified after start-up (retried with the next checkpoint): ${(error as Error).message}`),
    );
    this.timer = setInterval(() => void this.tick(), this.config.auditCheckpointIntervalMs ?? 60_000);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    await this.startup?.catch(() => undefined);
    await this.queue.catch(() => undefined);
  }

  /** The public keys that verify checkpoints and exports. */
  publicKeys(): ExportKey[] {
    return [{ keyId: this.config.signing.keyId, algorithm: 'Ed25519', publicKeyPem: publicKeyPem(this.config.signing.privateKey) }];
  }

  trustedKeys(): TrustedKeys {
    const keys = new Map<string, KeyObject>([[this.config.signing.keyId, createPublicKey(this.config.signing.privateKey)]]);
    return trustKeysById(keys);
  }

  /** The checkpoint writer's state (as last checked). */
  writerState(): CheckpointWriterState {
    return {
      healthy: this.verified !== undefined && this.problem === null,
      status: this.problem ? 'refusing' : this.verified ? 'ready' : 'verifying',
      lastCheckpointSeq: this.known?.seq ?? null,
      lastCheckpointCreatedAt: this.known?.createdAt ?? null,
      verifiedSeq: this.verified?.seq ?? null,
      verifiedAt: this.verified?.at ?? null,
      problem: this.problem,
    };
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
          `SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints
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
        `SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints
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
   * (later appends are left for the next run), checks every checkpoint's signature and head hash, that the
   * recorded head is where the entries end and that no checkpoint lies beyond it — and compares the
   * database with what this process verified and signed before (`checkpointWriter`). `previous`: a head
   * (seq and hash) kept from an earlier export, which must still be on the chain.
   */
  async verify(previous?: { seq: number; headHash: string }): Promise<AuditVerification> {
    const head = await this.head();
    const { report, lastCheckpoint } = await this.scan(head);
    // A whole-chain verification that passed is as good as the one after start-up (if that has not passed yet).
    if (report.intact && !this.verified) this.adopt(head, lastCheckpoint, 'GET /audit/verify');
    await this.refreshWriter();
    const checkpointWriter = this.writerState();
    let result: ChainReport = report;
    if (checkpointWriter.problem && result.intact) {
      // The chain verifies on its own, but not against this process's memory: rewritten and re-hashed.
      const { detectedAt: _detectedAt, ...problem } = checkpointWriter.problem;
      result = { ...result, intact: false, breaks: 1, firstBreak: problem };
    }
    let previousCheck: AuditVerification['previous'];
    if (previous) {
      const rows: { hash: string }[] =
        previous.seq === 0 ? [{ hash: GENESIS_HASH }] : await this.dataSource.query('SELECT hash FROM audit_entries WHERE seq = $1', [previous.seq]);
      const actualHash = rows[0]?.hash ?? null;
      previousCheck = { seq: previous.seq, headHash: previous.headHash, onChain: actualHash === previous.headHash, actualHash };
      if (!previousCheck.onChain) {
        const problem: ChainBreak = {
          seq: previous.seq,
          reason: actualHash === null ? 'entry-missing' : 'entry-changed',
          expected: previous.headHash,
          actual: actualHash,
          detail:
            actualHash === null
              ? `the chain has no entry ${previous.seq}, the head of the earlier export: entries were cut off`
              : `the entry at seq ${previous.seq} no longer has the hash of the earlier export's head: the history up to there was rewritten`,
        };
        result = { ...result, intact: false, breaks: result.breaks + 1, firstBreak: result.firstBreak ?? problem };
      }
    }
    return { ...result, verifiedAt: new Date().toISOString(), checkpointWriter, ...(previousCheck ? { previous: previousCheck } : {}) };
  }

  /**
   * The JSON Lines export, line by line: a header (format, time, public keys), every entry and checkpoint
   * up to the head recorded when the export started, in chain order, and a signed trailer. The whole
   * history from seq 1 is exported: that is what an offline verifier can check from genesis. While the
   * checkpoint writer refuses to sign, the trailer says so (`writerProblem`), under the signature.
   */
  async *exportJsonLines(): AsyncGenerator<string> {
    const exportedAt = new Date().toISOString();
    await this.refreshWriter();
    const head = await this.head();
    yield* exportJsonLines(this.items({ upTo: head.seq }), {
      exportedAt,
      keys: this.publicKeys(),
      signing: this.config.signing,
      writerProblem: this.problem,
    });
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
   * Signs the current head, if it moved since the last checkpoint, after checking that the database still
   * holds what this process verified and signed before and that the entries appended since chain onto it
   * (see the class comment). Waits for the whole-chain verification after start-up. Returns the checkpoint
   * written, or null (nothing new, another instance is writing, or a problem — which is logged, reported in
   * `writerState()` and never signed).
   */
  async writeCheckpoint(): Promise<AuditCheckpoint | null> {
    if (!(await this.ensureVerified())) return null;
    return this.serial(() => this.check(true));
  }

  /** Checks the writer's memory against the database (and what was appended since), without signing. */
  private async refreshWriter(): Promise<void> {
    if (!this.verified) return;
    await this.serial(() => this.check(false)).catch((error: unknown) =>
      this.log.warn(`audit checkpoint writer not checked: ${(error as Error).message}`),
    );
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Resolves true once the whole chain verified in this process (starting that verification if need be). */
  private ensureVerified(): Promise<boolean> {
    if (this.verified) return Promise.resolve(true);
    this.startup ??= this.verifyWholeChain().finally(() => {
      this.startup = undefined;
    });
    return this.startup;
  }

  private async verifyWholeChain(): Promise<boolean> {
    const started = Date.now();
    const head = await this.head();
    const { report, lastCheckpoint, stopped } = await this.scan(head, true);
    if (stopped) return false;
    if (this.verified) return true; // GET /audit/verify got there first
    if (!report.intact) {
      this.setProblem(report.firstBreak!, true, 'the whole-chain verification after start-up failed');
      return false;
    }
    this.adopt(head, lastCheckpoint, `after start-up, in ${Date.now() - started} ms`);
    return true;
  }

  /** Remembers a whole-chain verification that passed (only the first: memory never goes back to the database's word). */
  private adopt(head: { seq: number; hash: string }, lastCheckpoint: AuditCheckpoint | undefined, how: string): void {
    if (this.verified) return;
    this.verified = { seq: head.seq, hash: head.hash, at: new Date().toISOString() };
    this.known = lastCheckpoint;
    this.setProblem(null);
    this.log.log(`audit chain verified from the first entry to seq ${head.seq} (${how}); signing checkpoints`);
  }

  /**
   * Verifies the chain from the first entry up to `head`, then looks for checkpoints beyond the head as it
   * is now (the head only moves forward: the entries such a checkpoint covered were cut off).
   */
  private async scan(
    head: { seq: number; hash: string },
    stopOnShutdown = false,
  ): Promise<{ report: ChainReport; lastCheckpoint?: AuditCheckpoint; stopped: boolean }> {
    const verifier = new ChainVerifier(this.trustedKeys());
    let lastCheckpoint: AuditCheckpoint | undefined;
    for await (const item of this.items({ upTo: head.seq })) {
      if (stopOnShutdown && this.stopped) return { report: verifier.finish(head), stopped: true };
      if (item.kind === 'entry') verifier.addEntry(item.entry);
      else {
        verifier.addCheckpoint(item.checkpoint);
        lastCheckpoint = item.checkpoint;
      }
    }
    const now = await this.head();
    const beyond: CheckpointRow[] = await this.dataSource.query(
      `SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT ${BATCH_SIZE}`,
      [Math.max(now.seq, head.seq)],
    );
    for (const row of beyond) verifier.addCheckpoint(checkpointOf(row));
    return { report: verifier.finish(head), lastCheckpoint, stopped: false };
  }

  /**
   * One check of the writer (in a transaction; with `sign`, under the advisory lock, and signing the head
   * when all is well). Only after the transaction committed does the memory move forward.
   */
  private async check(sign: boolean): Promise<AuditCheckpoint | null> {
    const verified = this.verified!;
    const known = this.known;
    const outcome = await this.dataSource.transaction(async (manager): Promise<WriterOutcome> => {
      if (sign) {
        const [{ locked }]: { locked: boolean }[] = await manager.query('SELECT pg_try_advisory_xact_lock($1) AS locked', [
          CHECKPOINT_LOCK_KEY,
        ]);
        if (!locked) return { kind: 'busy' };
      }
      const head = await this.head(manager);
      const latestRows: CheckpointRow[] = await manager.query(
        `SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`,
      );
      const latest = latestRows.length ? checkpointOf(latestRows[0]) : null;
      const problem =
        (await this.compareWithMemory(manager, head, verified, known)) ?? (latest ? await this.checkLatest(manager, latest, head) : null);
      if (problem) return { kind: 'problem', problem };

      // What was appended since, and the checkpoints other replicas signed over it.
      let newest = latest && latest.seq <= verified.seq ? latest : (known ?? null);
      if (head.seq > verified.seq) {
        const verifier = new ChainVerifier(this.trustedKeys(), verified);
        for await (const item of this.items({ after: verified.seq, upTo: head.seq, manager })) {
          if (item.kind === 'entry') verifier.addEntry(item.entry);
          else {
            verifier.addCheckpoint(item.checkpoint);
            newest = item.checkpoint;
          }
        }
        const segment = verifier.finish(head);
        if (!segment.intact) return { kind: 'problem', problem: segment.firstBreak! };
      }
      if (!sign || head.seq === 0 || (latest && latest.seq >= head.seq)) return { kind: 'ok', head, newest, written: null };
      const checkpoint = signCheckpoint({ seq: head.seq, headHash: head.hash, createdAt: new Date().toISOString() }, this.config.signing);
      await manager.query(
        'INSERT INTO audit_checkpoints (seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)',
        [checkpoint.seq, checkpoint.headHash, checkpoint.createdAt, checkpoint.keyId, checkpoint.signature],
      );
      return { kind: 'ok', head, newest: checkpoint, written: checkpoint };
    });
    if (outcome.kind === 'busy') return null;
    if (outcome.kind === 'problem') {
      this.setProblem(outcome.problem, sign);
      return null;
    }
    this.verified = { seq: outcome.head.seq, hash: outcome.head.hash, at: new Date().toISOString() };
    if (outcome.newest && (!this.known || outcome.newest.seq > this.known.seq)) this.known = outcome.newest;
    this.setProblem(null);
    return outcome.written;
  }

  /** Does the database still hold what this process verified and signed? (Three small queries.) */
  private async compareWithMemory(
    manager: EntityManager,
    head: { seq: number; hash: string },
    verified: { seq: number; hash: string; at: string },
    known: AuditCheckpoint | undefined,
  ): Promise<ChainBreak | null> {
    const problems: ChainBreak[] = [];
    if (known) {
      const rows: CheckpointRow[] = await manager.query(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq = $1`, [known.seq]);
      const stored = rows.length ? checkpointOf(rows[0]) : null;
      if (!stored) {
        problems.push({
          seq: known.seq,
          reason: 'checkpoint-missing',
          expected: known.headHash,
          actual: null,
          detail:
            `the checkpoint at seq ${known.seq} (signed ${known.createdAt}), which this service wrote or verified, is gone: ` +
            `checkpoints were deleted, and the history they covered may have been rewritten`,
        });
      } else if (!sameCheckpoint(stored, known)) {
        problems.push({
          seq: known.seq,
          reason: 'checkpoint-changed',
          expected: known.headHash,
          actual: stored.headHash,
          detail: `the checkpoint at seq ${known.seq} differs from the one this service wrote or verified (signed ${known.createdAt})`,
        });
      }
    }
    if (verified.seq > 0) {
      const rows: { hash: string }[] = await manager.query('SELECT hash FROM audit_entries WHERE seq = $1', [verified.seq]);
      if (rows.length === 0) {
        problems.push({
          seq: verified.seq,
          reason: 'entry-missing',
          expected: verified.hash,
          actual: null,
          detail: `entry ${verified.seq}, verified by this service at ${verified.at}, is gone`,
        });
      } else if (rows[0].hash !== verified.hash) {
        problems.push({
          seq: verified.seq,
          reason: 'entry-changed',
          expected: verified.hash,
          actual: rows[0].hash,
          detail:
            `entry ${verified.seq} no longer has the hash this service verified at ${verified.at}: ` +
            `the history up to seq ${verified.seq} was rewritten (and re-hashed)`,
        });
      }
    }
    // The stored head (only when the entry itself still agrees: a rewrite re-hashes both).
    if (head.seq < verified.seq && !problems.some((problem) => problem.reason.startsWith('entry-'))) {
      problems.push({
        seq: verified.seq,
        reason: 'head-mismatch',
        expected: `${verified.seq}:${verified.hash}`,
        actual: `${head.seq}:${head.hash}`,
        detail: `the chain head went back from seq ${verified.seq}, verified by this service at ${verified.at}, to seq ${head.seq}`,
      });
    } else if (head.seq === verified.seq && head.hash !== verified.hash && !problems.some((problem) => problem.reason.startsWith('entry-'))) {
      problems.push({
        seq: verified.seq,
        reason: 'head-mismatch',
        expected: `${verified.seq}:${verified.hash}`,
        actual: `${head.seq}:${head.hash}`,
        detail: `the chain head at seq ${head.seq} no longer has the hash this service verified at ${verified.at}`,
      });
    }
    // In chain order (an entry before the checkpoint at its seq).
    problems.sort((a, b) => a.seq! - b.seq! || (a.reason.startsWith('checkpoint') ? 1 : 0) - (b.reason.startsWith('checkpoint') ? 1 : 0));
    return problems[0] ?? null;
  }

  /** The newest checkpoint in the database: signed with a trusted key, and naming the hash stored at its seq. */
  private async checkLatest(manager: EntityManager, latest: AuditCheckpoint, head: { seq: number; hash: string }): Promise<ChainBreak | null> {
    const signature = checkCheckpointSignature(latest, this.trustedKeys());
    if (signature !== 'ok') {
      return {
        seq: latest.seq,
        reason: 'checkpoint-signature',
        expected: 'a valid signature by a trusted key',
        actual: `${signature} (key ${latest.keyId})`,
        detail: `the newest checkpoint (seq ${latest.seq}) is not validly signed by this service`,
      };
    }
    if (latest.seq > head.seq) {
      return {
        seq: latest.seq,
        reason: 'checkpoint-mismatch',
        expected: latest.headHash,
        actual: null,
        detail: `a signed checkpoint covers entries up to seq ${latest.seq}, but the chain head is at seq ${head.seq}: entries were cut off the end`,
      };
    }
    const rows: { hash: string }[] = await manager.query('SELECT hash FROM audit_entries WHERE seq = $1', [latest.seq]);
    if (rows[0]?.hash !== latest.headHash) {
      return {
        seq: latest.seq,
        reason: 'checkpoint-mismatch',
        expected: latest.headHash,
        actual: rows[0]?.hash ?? null,
        detail: `the chain at seq ${latest.seq} differs from what was signed at ${latest.createdAt}`,
      };
    }
    return null;
  }

  /** Records (or clears) the writer's problem; logs an ERROR when it appears or changes, and at every refused signature. */
  private setProblem(problem: ChainBreak | null, signing = false, context?: string): void {
    if (!problem) {
      if (this.problem) this.log.warn(`audit checkpoint writer: the database agrees again with what this service verified; signing resumes`);
      this.problem = null;
      return;
    }
    const same = this.problem !== null && problemKey(this.problem) === problemKey(problem);
    if (!same) this.problem = { ...problem, detectedAt: new Date().toISOString() };
    if (!same || signing) {
      this.log.error(
        `audit checkpoint writer refuses to sign${context ? ` (${context})` : ''}: ${problem.detail} ` +
          `[seq ${problem.seq ?? '-'}, ${problem.reason}, detected ${this.problem!.detectedAt}]. Nothing is appended to a history ` +
          `that may have been rewritten; see GET /api/v1/audit/verify and compare with an earlier export ` +
          `(npm run audit:verify -- new.jsonl --previous old.jsonl)`,
      );
    }
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
