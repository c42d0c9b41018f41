import type { MigrationInterface, QueryRunner } from 'typeorm';
import { chainEntryHash, GENESIS_HASH, type ChainEntryContent } from '../../audit/audit-chain';

const BACKFILL_BATCH = 1000;

/**
 * A verifiable audit trail (see audit/audit-chain.ts):
 * - `audit_entries` gets the client's source address and its place in a SHA-256 hash chain
 *   (`seq`, `prev_hash`, `hash`); the application computes the hashes in `AuditLog.append`.
 * - `audit_chain_head` is the single row that serialises appends (its row lock) and holds the chain's end.
 * - `audit_checkpoints` holds the signed checkpoints of the chain head.
 * Entries written before this migration are chained here, in id order, after their time is rounded to
 * the millisecond (the precision the application hashes).
 */
export class AuditHashChain1764400100000 implements MigrationInterface {
  name = 'AuditHashChain1764400100000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE audit_entries
        ADD COLUMN source_address text,
        ADD COLUMN seq bigint,
        ADD COLUMN prev_hash text,
        ADD COLUMN hash text`);

    // Chain the entries that already exist (the append-only trigger is off for this transaction only).
    await queryRunner.query(`ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only`);
    await queryRunner.query(`UPDATE audit_entries SET occurred_at = date_trunc('milliseconds', occurred_at)`);
    let seq = 0;
    let prevHash = GENESIS_HASH;
    let lastId = '0';
    for (;;) {
      const rows: BackfillRow[] = await queryRunner.query(
        `SELECT id, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref, details
         FROM audit_entries WHERE id > $1 ORDER BY id LIMIT ${BACKFILL_BATCH}`,
        [lastId],
      );
      if (rows.length === 0) break;
      const ids: string[] = [];
      const seqs: number[] = [];
      const prevHashes: string[] = [];
      const hashes: string[] = [];
      for (const row of rows) {
        seq += 1;
        const content: ChainEntryContent = {
          seq,
          occurredAt: new Date(row.occurred_at).toISOString(),
          actor: row.actor,
          action: row.action,
          groupId: row.group_id,
          systemId: row.system_id,
          commandId: row.command_id,
          reason: row.reason,
          incidentRef: row.incident_ref,
          sourceAddress: null,
          details: row.details,
        };
        const hash = chainEntryHash(prevHash, content);
        ids.push(row.id);
        seqs.push(seq);
        prevHashes.push(prevHash);
        hashes.push(hash);
        prevHash = hash;
      }
      await queryRunner.query(
        `UPDATE audit_entries e SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(id, seq, prev_hash, hash) WHERE e.id = u.id`,
        [ids, seqs, prevHashes, hashes],
      );
      lastId = rows[rows.length - 1].id;
    }
    await queryRunner.query(`ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only`);

    await queryRunner.query(`
      ALTER TABLE audit_entries
        ALTER COLUMN seq SET NOT NULL,
        ALTER COLUMN prev_hash SET NOT NULL,
        ALTER COLUMN hash SET NOT NULL,
        -- The application sets the time (to the millisecond, the precision it hashes).
        ALTER COLUMN occurred_at DROP DEFAULT,
        ADD CONSTRAINT audit_entries_seq_key UNIQUE (seq),
        ADD CONSTRAINT audit_entries_seq_positive CHECK (seq > 0),
        ADD CONSTRAINT audit_entries_hash_format CHECK (hash ~ '^[0-9a-f]{64}$' AND prev_hash ~ '^[0-9a-f]{64}$'),
        ADD CONSTRAINT audit_entries_occurred_at_ms CHECK (occurred_at = date_trunc('milliseconds', occurred_at))`);

    await queryRunner.query(`
      CREATE TABLE audit_chain_head (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        seq       bigint NOT NULL CHECK (seq >= 0),
        hash      text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
      )`);
    await queryRunner.query(`INSERT INTO audit_chain_head (singleton, seq, hash) VALUES (true, $1, $2)`, [seq, prevHash]);
    // The head only moves forward and is never removed.
    await queryRunner.query(`
      CREATE FUNCTION audit_chain_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'UPDATE' AND NEW.seq >= OLD.seq THEN
          RETURN NEW;
        END IF;
        RAISE EXCEPTION 'the audit chain head only moves forward (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
      END $$`);
    await queryRunner.query(`
      CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE OR DELETE ON audit_chain_head
      FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard()`);
    await queryRunner.query(`
      CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
      FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_guard()`);

    await queryRunner.query(`
      CREATE TABLE audit_checkpoints (
        id          bigserial PRIMARY KEY,
        seq         bigint NOT NULL UNIQUE CHECK (seq > 0),
        head_hash   text NOT NULL CHECK (head_hash ~ '^[0-9a-f]{64}$'),
        created_at  timestamptz NOT NULL CHECK (created_at = date_trunc('milliseconds', created_at)),
        key_id      text NOT NULL,
        signature   text NOT NULL
      )`);
    await queryRunner.query(`
      CREATE FUNCTION audit_checkpoints_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit checkpoints are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
      END $$`);
    await queryRunner.query(`
      CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
      FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_reject_change()`);
    await queryRunner.query(`
      CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
      FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_reject_change()`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS audit_checkpoints`);
    await queryRunner.query(`DROP FUNCTION IF EXISTS audit_checkpoints_reject_change()`);
    await queryRunner.query(`DROP TABLE IF EXISTS audit_chain_head`);
    await queryRunner.query(`DROP FUNCTION IF EXISTS audit_chain_head_guard()`);
    await queryRunner.query(`
      ALTER TABLE audit_entries
        DROP CONSTRAINT IF EXISTS audit_entries_occurred_at_ms,
        DROP CONSTRAINT IF EXISTS audit_entries_hash_format,
        DROP CONSTRAINT IF EXISTS audit_entries_seq_positive,
        DROP CONSTRAINT IF EXISTS audit_entries_seq_key,
        ALTER COLUMN occurred_at SET DEFAULT clock_timestamp(),
        DROP COLUMN hash,
        DROP COLUMN prev_hash,
        DROP COLUMN seq,
        DROP COLUMN source_address`);
  }
}

interface BackfillRow {
  id: string;
  occurred_at: Date;
  actor: string;
  action: string;
  group_id: string | null;
  system_id: string | null;
  command_id: string | null;
  reason: string | null;
  incident_ref: string | null;
  details: Record<string, unknown>;
}
