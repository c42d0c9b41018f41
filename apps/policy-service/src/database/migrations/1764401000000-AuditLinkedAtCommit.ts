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
 * Now the application writes each entry to `audit_pending` with its canonical JSON cut where the time and
 * the sequence number go (`chainEntryTemplate` in audit/audit-chain.ts). A deferred constraint trigger
 * fires when the transaction commits: it locks the head, takes the time, hashes each pending entry exactly
 * as `chainEntryHash` does — SHA-256 of the UTF-8 of `prevHash + head + occurredAt + middle + seq + tail` —
 * inserts it into `audit_entries` and moves the head. The lock is held from there to the end of that same
 * commit: no round trip, no application code inside it. The chain's format is unchanged, every verifier
 * reads it as before, the entries are still part of the change's transaction (both or neither), and times
 * still follow the chain (taken after the lock).
 *
 * The first pending row's trigger links all pending rows the transaction sees, in id order (the order they
 * were appended); the others find their row gone. Pending rows live only inside their transaction: they are
 * UNLOGGED (no WAL for a row deleted before commit). One written while triggers were off (a superuser's
 * `session_replication_role = replica`) stays pending and is linked by the next transaction that appends.
 *
 * During a rolling upgrade an older service instance still appends the old way; both take the same row
 * lock and read the head under it, so the chain stays one chain.
 */
export class AuditLinkedAtCommit1764401000000 implements MigrationInterface {
  name = 'AuditLinkedAtCommit1764401000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE UNLOGGED TABLE audit_pending (
        id                bigserial PRIMARY KEY,
        actor             text NOT NULL,
        action            text NOT NULL,
        group_id          text,
        system_id         text,
        command_id        uuid,
        reason            text,
        incident_ref      text,
        source_address    text,
        details           jsonb NOT NULL,
        canonical_head    text NOT NULL,
        canonical_middle  text NOT NULL,
        canonical_tail    text NOT NULL
      )`);
    await queryRunner.query(`
      CREATE FUNCTION audit_link_pending() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        head_seq   bigint;
        head_hash  text;
        prev_hash  text;
        at         timestamptz;
        at_text    text;
        pending    audit_pending;
        linked     bigint[] := '{}';
      BEGIN
        PERFORM 1 FROM audit_pending WHERE id = NEW.id;
        IF NOT FOUND THEN
          RETURN NULL; -- linked already, with the rest of its transaction's entries
        END IF;
        SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_chain_head h FOR UPDATE;
        IF NOT FOUND THEN
          RAISE EXCEPTION 'the audit chain head is missing';
        END IF;
        -- After the lock, so that times follow the chain; to the millisecond, the precision the chain hashes.
        at := date_trunc('milliseconds', clock_timestamp());
        at_text := to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
        FOR pending IN SELECT * FROM audit_pending ORDER BY id LOOP
          head_seq := head_seq + 1;
          prev_hash := head_hash;
          head_hash := encode(sha256(convert_to(
            prev_hash || pending.canonical_head || at_text || pending.canonical_middle || head_seq::text || pending.canonical_tail,
            'UTF8')), 'hex');
          INSERT INTO audit_entries (seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref,
                                     source_address, details, prev_hash, hash)
          VALUES (head_seq, at, pending.actor, pending.action, pending.group_id, pending.system_id, pending.command_id,
                  pending.reason, pending.incident_ref, pending.source_address, pending.details, prev_hash, head_hash);
          linked := linked || pending.id;
        END LOOP;
        DELETE FROM audit_pending WHERE id = ANY(linked);
        UPDATE audit_chain_head SET seq = head_seq, hash = head_hash;
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
  }
}
