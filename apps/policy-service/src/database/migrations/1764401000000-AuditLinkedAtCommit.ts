import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Audit entries are linked into the hash chain AT COMMIT, by the database, instead of by the application
 * between its statements (bench/README.md, finding 28).
 *
 * Before: `AuditLog.append` locked the chain head (`SELECT … FOR UPDATE`), hashed the entries, wrote them
 * and moved the head; the lock was held until the application sent COMMIT. That hold spanned two round
 * trips and two turns of the service's event loop, so under load every transaction that records anything
 * queued on the one head row (31.8 ms of waiting per transaction at 141 transactions/s, the lock busy all
 * the time) — the chain, not the hardware, set the policy service's rate.
 *
 * Now the application writes its entries to `audit_pending`, each with its canonical JSON cut where the time
 * and the sequence number go (`chainEntryTemplate` in audit/audit-chain.ts). A deferred constraint trigger
 * fires when the transaction commits: it locks the head, takes the time, hashes each pending entry exactly
 * as `chainEntryHash` does — SHA-256 of the UTF-8 of `prevHash + head + occurredAt + middle + seq + tail` —
 * inserts it into `audit_entries` and moves the head. The lock is held from there to the end of that same
 * commit: no round trip, no application code inside it. The chain's format is unchanged, every verifier
 * reads it as before, the entries are still part of the change's transaction (both or neither), and times
 * still follow the chain (taken after the lock).
 *
 * Each append is one pending row (its entries as a JSON array). The first pending row's trigger links every
 * pending row the transaction sees, in id order (the order of the appends), hashing one entry after the
 * other and inserting them all in one statement; the others find their row gone. Pending rows live only
 * inside their transaction: the table is UNLOGGED (no WAL for a row deleted before its commit). A row written
 * while triggers were off (a superuser's `session_replication_role = replica`) stays pending and is linked
 * by the next transaction that appends.
 *
 * During a rolling upgrade an older service instance still appends the old way; both take the same row
 * lock and read the head under it, so the chain stays one chain.
 */
export class AuditLinkedAtCommit1764401000000 implements MigrationInterface {
  name = 'AuditLinkedAtCommit1764401000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // One appended entry, as the application sends it: its columns and its cut canonical JSON.
    await queryRunner.query(`
      CREATE TYPE audit_pending_entry AS (
        actor             text,
        action            text,
        group_id          text,
        system_id         text,
        command_id        uuid,
        reason            text,
        incident_ref      text,
        source_address    text,
        details           jsonb,
        canonical_head    text,
        canonical_middle  text,
        canonical_tail    text
      )`);
    // One row per append (a JSON array of entries), deleted by the commit that links it.
    await queryRunner.query(`
      CREATE UNLOGGED TABLE audit_pending (
        id       bigserial PRIMARY KEY,
        entries  json NOT NULL
      )`);
    await queryRunner.query(`
      CREATE FUNCTION audit_link_pending() RETURNS trigger LANGUAGE plpgsql
      -- The tables the migrations made, never a session's temporary table of the same name.
      SET search_path = public, pg_temp
      AS $$
      DECLARE
        appends    bigint[];
        head_seq   bigint;
        head_hash  text;
        chain_start text;
        at         timestamptz;
        at_text    text;
        entry      record;
        hashes     text[] := '{}';
      BEGIN
        PERFORM 1 FROM audit_pending WHERE id = NEW.id;
        IF NOT FOUND THEN
          RETURN NULL; -- linked already, with the rest of its transaction's entries
        END IF;
        SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_chain_head h FOR UPDATE;
        IF NOT FOUND THEN
          RAISE EXCEPTION 'the audit chain head is missing';
        END IF;
        chain_start := head_hash;
        SELECT array_agg(id ORDER BY id) INTO appends FROM audit_pending;
        -- After the lock, so that times follow the chain; to the millisecond, the precision the chain hashes.
        at := date_trunc('milliseconds', clock_timestamp());
        at_text := to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
        -- The chain is sequential: each hash covers the one before.
        FOR entry IN
          SELECT e.canonical_head, e.canonical_middle, e.canonical_tail
          FROM audit_pending p, json_populate_recordset(NULL::audit_pending_entry, p.entries) WITH ORDINALITY AS e
          WHERE p.id = ANY(appends) ORDER BY p.id, e.ordinality
        LOOP
          head_hash := encode(sha256(convert_to(
            head_hash || entry.canonical_head || at_text || entry.canonical_middle || (head_seq + cardinality(hashes) + 1)::text
              || entry.canonical_tail,
            'UTF8')), 'hex');
          hashes := hashes || head_hash;
        END LOOP;
        INSERT INTO audit_entries (seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref,
                                   source_address, details, prev_hash, hash)
        SELECT head_seq + e.n, at, e.actor, e.action, e.group_id, e.system_id, e.command_id, e.reason, e.incident_ref,
               e.source_address, e.details, CASE WHEN e.n = 1 THEN chain_start ELSE hashes[e.n - 1] END, hashes[e.n]
        FROM (SELECT x.*, row_number() OVER (ORDER BY p.id, x.ordinality) AS n
              FROM audit_pending p, json_populate_recordset(NULL::audit_pending_entry, p.entries) WITH ORDINALITY AS x
              WHERE p.id = ANY(appends)) AS e
        ORDER BY e.n;
        DELETE FROM audit_pending WHERE id = ANY(appends);
        UPDATE audit_chain_head SET seq = head_seq + cardinality(hashes), hash = head_hash;
        RETURN NULL;
      END
      $$`);
    await queryRunner.query(`
      CREATE CONSTRAINT TRIGGER audit_pending_link AFTER INSERT ON audit_pending
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_link_pending()`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE audit_pending`);
    await queryRunner.query(`DROP FUNCTION audit_link_pending()`);
    await queryRunner.query(`DROP TYPE audit_pending_entry`);
  }
}
