import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * People and approvals:
 * - a restore can be a REQUEST awaiting a second security lead's approval: a `commands` row with an
 *   approval status, an expiry and the group decision it was made against (its basis); at most one open
 *   request per group;
 * - each group says whether one admin may restore it alone (`restore_approval`), four eyes by default;
 * - break-glass principals become explicit per-system exemptions with a reason, an author, a date and an
 *   optional expiry, instead of the bare `systems.exempt_principals` array (whose entries are carried over).
 */
export class ApprovalsAndExemptions1764400300000 implements MigrationInterface {
  name = 'ApprovalsAndExemptions1764400300000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      ALTER TABLE commands
        ADD COLUMN approval_mode             text CHECK (approval_mode IN ('four-eyes', 'single-admin')),
        ADD COLUMN approval_status           text
                                             CHECK (approval_status IN ('awaiting-approval', 'approved', 'rejected', 'expired', 'superseded')),
        ADD COLUMN approval_expires_at       timestamptz,
        ADD COLUMN approval_basis_command_id uuid,
        ADD COLUMN decided_by                text,
        ADD COLUMN decided_at                timestamptz,
        ADD COLUMN decision_comment          text,
        ADD CONSTRAINT commands_restore_request_shape CHECK (
          approval_status IS NULL
          OR (action = 'restore' AND approval_mode = 'four-eyes' AND approval_expires_at IS NOT NULL)
        )`);
    // One open restore request per group; a second one is refused while the first is open.
    await queryRunner.query(`
      CREATE UNIQUE INDEX commands_one_open_restore_request ON commands (group_id)
      WHERE approval_status = 'awaiting-approval'`);
    await queryRunner.query(`
      ALTER TABLE groups ADD COLUMN restore_approval text NOT NULL DEFAULT 'four-eyes'
        CHECK (restore_approval IN ('four-eyes', 'single-admin'))`);
    await queryRunner.query(`
      CREATE TABLE system_exemptions (
        system_id   text NOT NULL REFERENCES systems (id),
        principal   text NOT NULL CHECK (length(principal) BETWEEN 1 AND 256),
        reason      text NOT NULL,
        created_by  text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        expires_at  timestamptz,
        PRIMARY KEY (system_id, principal)
      )`);
    // Principals registered before exemptions existed keep their exemption, credited to whoever registered the system.
    await queryRunner.query(`
      INSERT INTO system_exemptions (system_id, principal, reason, created_by, created_at)
      SELECT s.id, p.principal, 'registered with the system',
             COALESCE((SELECT a.actor FROM audit_entries a
                       WHERE a.action = 'system.registered' AND a.system_id = s.id ORDER BY a.id LIMIT 1), 'system'),
             s.created_at
      FROM systems s CROSS JOIN LATERAL unnest(s.exempt_principals) AS p(principal)
      ON CONFLICT DO NOTHING`);
    await queryRunner.query(`ALTER TABLE systems DROP COLUMN exempt_principals`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE systems ADD COLUMN exempt_principals text[] NOT NULL DEFAULT '{}'`);
    await queryRunner.query(`
      UPDATE systems s SET exempt_principals = e.principals
      FROM (SELECT system_id, array_agg(principal ORDER BY principal) AS principals FROM system_exemptions GROUP BY system_id) e
      WHERE e.system_id = s.id`);
    await queryRunner.query(`DROP TABLE system_exemptions`);
    await queryRunner.query(`ALTER TABLE groups DROP COLUMN restore_approval`);
    await queryRunner.query(`DROP INDEX commands_one_open_restore_request`);
    await queryRunner.query(`
      ALTER TABLE commands
        DROP CONSTRAINT commands_restore_request_shape,
        DROP COLUMN approval_mode, DROP COLUMN approval_status, DROP COLUMN approval_expires_at,
        DROP COLUMN approval_basis_command_id, DROP COLUMN decided_by, DROP COLUMN decided_at, DROP COLUMN decision_comment`);
  }
}
