import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The group role the policy service's login role belongs to (`GRANT portcullis_app TO <login role>`). */
export const APP_ROLE = 'portcullis_app';

/** Tables the application may only read and append to: the audit trail and its signed checkpoints. */
export const APPEND_ONLY_TABLES = ['audit_entries', 'audit_checkpoints'];

/**
 * Real privileges instead of trust: the service runs as a login role that is a member of the NOLOGIN
 * group role `portcullis_app`, which may read and write the ordinary tables but only read and insert
 * the audit tables (so it cannot edit or delete history even if the append-only triggers were dropped,
 * and cannot TRUNCATE anything). Migrations run as the owner of the tables (`DATABASE_MIGRATION_URL`).
 *
 * Tables created by LATER migrations: `ALTER DEFAULT PRIVILEGES` below makes every table and sequence the
 * migrating role creates in `public` from now on readable and writable by `portcullis_app` — so a new
 * ordinary table needs nothing. A later migration that creates another append-only table must revoke
 * what the default granted: `REVOKE UPDATE, DELETE ON <table> FROM portcullis_app`. (Default privileges
 * apply to objects created by the role that ran this migration; migrations are always run by that role.)
 *
 * Roles are cluster-wide while grants are per database: the role is created only if missing (several
 * databases on one server, possibly migrating at the same time), the grants are made in each database.
 */
export class AppRoleGrants1764400150000 implements MigrationInterface {
  name = 'AppRoleGrants1764400150000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(createAppRoleSql());
    await queryRunner.query(`
      DO $$
      BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO ${APP_ROLE}', current_database());
      END $$`);
    await queryRunner.query(`GRANT USAGE ON SCHEMA public TO ${APP_ROLE}`);
    await queryRunner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${APP_ROLE}`);
    await queryRunner.query(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${APP_ROLE}`);
    await queryRunner.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${APP_ROLE}`);
    await queryRunner.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${APP_ROLE}`);
    // History: read and append only.
    for (const table of APPEND_ONLY_TABLES) {
      await queryRunner.query(`REVOKE UPDATE, DELETE, TRUNCATE ON ${table} FROM ${APP_ROLE}`);
    }
    // The chain head is one row that only moves forward: read and update, never insert or delete.
    await queryRunner.query(`REVOKE INSERT, DELETE, TRUNCATE ON audit_chain_head FROM ${APP_ROLE}`);
    // The migration bookkeeping belongs to the migrating role.
    await queryRunner.query(`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON migrations FROM ${APP_ROLE}`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM ${APP_ROLE}`);
    await queryRunner.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM ${APP_ROLE}`);
    await queryRunner.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${APP_ROLE}`);
    await queryRunner.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${APP_ROLE}`);
    await queryRunner.query(`REVOKE USAGE ON SCHEMA public FROM ${APP_ROLE}`);
    // The role itself stays: it is cluster-wide and other databases may use it.
  }
}

/**
 * Creates the NOLOGIN group role if it does not exist yet; safe when several databases of one server
 * migrate at the same moment (the loser of the race finds the role created).
 */
export function createAppRoleSql(): string {
  return `
    DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${APP_ROLE}') THEN
        BEGIN
          CREATE ROLE ${APP_ROLE} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
          NULL;
        END;
      END IF;
    END $$`;
}
