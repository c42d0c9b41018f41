import type { MigrationInterface, QueryRunner } from 'typeorm';
import { APP_ROLE } from './1764400150000-AppRoleGrants';

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
 * Each append is one pending row (its entries as a JSON array) and fires the trigger once, in the order of
 * the appends: it hashes that row's entries one after the other, inserts them in one statement and deletes
 * the row by its key (no scan: a table of dead rows, while a long snapshot keeps vacuum from removing them,
 * costs nothing here). Entries of one append share a time; a later append of the same transaction, linked
 * under the lock it already holds, may carry a later one. The table is UNLOGGED: no WAL for rows that never
 * outlive their transaction. A row written while triggers were off (only a superuser can) stays pending and
 * is not linked by anyone; `down` refuses to drop such rows.
 *
 * The time is the database server's clock (before: the service host's). A transaction that links early —
 * `SET CONSTRAINTS ALL IMMEDIATE`, or `PREPARE TRANSACTION` — holds the chain's lock from there until it
 * ends; the service does neither.
 *
 * During a rolling upgrade an older service instance still appends the old way; both take the same row
 * lock and read the head under it, so the chain stays one chain (its entries' times come from its host's
 * clock, so across the two kinds of entry times follow the chain only as far as the clocks agree).
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
      -- The tables the migrations made, never a session's temporary table of the same name (pg_catalog comes
      -- first, implicitly; the one argument a look-alike function could match better is typed exactly).
      SET search_path = public, pg_temp
      AS $$
      DECLARE
        head_seq     bigint;
        head_hash    text;
        chain_start  text;
        at           timestamptz;
        at_text      text;
        entry        record;
        hashes       text[] := '{}';
      BEGIN
        SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_chain_head h FOR UPDATE;
        IF NOT FOUND THEN
          RAISE EXCEPTION 'the audit chain head is missing';
        END IF;
        chain_start := head_hash;
        -- After the lock, so that times follow the chain; to the millisecond, the precision the chain hashes.
        at := date_trunc('milliseconds', clock_timestamp());
        at_text := to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
        -- The chain is sequential: each hash covers the one before.
        FOR entry IN
          SELECT e.canonical_head, e.canonical_middle, e.canonical_tail
          FROM json_populate_recordset(NULL::audit_pending_entry, NEW.entries) WITH ORDINALITY AS e ORDER BY e.ordinality
        LOOP
          head_hash := encode(sha256(convert_to(
            head_hash || entry.canonical_head || at_text || entry.canonical_middle || (head_seq + cardinality(hashes) + 1)::text
              || entry.canonical_tail,
            'UTF8'::name)), 'hex');
          hashes := hashes || head_hash;
        END LOOP;
        INSERT INTO audit_entries (seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref,
                                   source_address, details, prev_hash, hash)
        SELECT head_seq + e.ordinality, at, e.actor, e.action, e.group_id, e.system_id, e.command_id, e.reason, e.incident_ref,
               e.source_address, e.details, CASE WHEN e.ordinality = 1 THEN chain_start ELSE hashes[e.ordinality::int - 1] END,
               hashes[e.ordinality::int]
        FROM json_populate_recordset(NULL::audit_pending_entry, NEW.entries) WITH ORDINALITY AS e
        ORDER BY e.ordinality;
        DELETE FROM audit_pending WHERE id = NEW.id;
        UPDATE audit_chain_head SET seq = head_seq + cardinality(hashes), hash = head_hash;
        RETURN NULL;
      END
      $$`);
    await queryRunner.query(`
      CREATE CONSTRAINT TRIGGER audit_pending_link AFTER INSERT ON audit_pending
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_link_pending()`);
    // Stated, not left to the default privileges of whichever role migrates: the function runs with the
    // service's rights (it appends as the service did), so the service writes and removes pending rows.
    await queryRunner.query(`GRANT SELECT, INSERT, DELETE ON audit_pending TO ${APP_ROLE}`);
    await queryRunner.query(`REVOKE UPDATE, TRUNCATE ON audit_pending FROM ${APP_ROLE}`);
    await queryRunner.query(`GRANT USAGE ON SEQUENCE audit_pending_id_seq TO ${APP_ROLE}`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    // Pending rows outlive their transaction only when it ran with triggers off: never drop history silently.
    const [{ pending }] = await queryRunner.query('SELECT count(*)::int AS pending FROM audit_pending');
    if (pending > 0) throw new Error(`audit_pending holds ${pending} entries that were never linked into the chain: link or export them first`);
    await queryRunner.query(`DROP TABLE audit_pending`);
    await queryRunner.query(`DROP FUNCTION audit_link_pending()`);
    await queryRunner.query(`DROP TYPE audit_pending_entry`);
  }
}
