import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Registry (systems, groups), decisions (commands and their per-system targets), evidence
 * (acknowledgements, audit entries), the transactional outbox and the adapter inventory.
 */
export class InitialSchema1764320400000 implements MigrationInterface {
  name = 'InitialSchema1764320400000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE systems (
        id                   text PRIMARY KEY,
        name                 text NOT NULL,
        kind                 text NOT NULL,
        exempt_principals    text[] NOT NULL DEFAULT '{}',
        desired_state        text NOT NULL DEFAULT 'active' CHECK (desired_state IN ('active', 'revoked')),
        generation           bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
        desired_command_id   uuid,
        enforced_generation  bigint NOT NULL DEFAULT 0,
        enforcement_status   text NOT NULL DEFAULT 'enforced'
                             CHECK (enforcement_status IN ('pending', 'delivered', 'enforced', 'failed')),
        enforcement_detail   text,
        acknowledged_by      text,
        last_acknowledged_at timestamptz,
        created_at           timestamptz NOT NULL DEFAULT now(),
        updated_at           timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE groups (
        id                    text PRIMARY KEY,
        name                  text NOT NULL,
        state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
        last_command_id       uuid,
        created_at            timestamptz NOT NULL DEFAULT now(),
        updated_at            timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE group_systems (
        group_id  text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        system_id text NOT NULL REFERENCES systems (id),
        PRIMARY KEY (group_id, system_id)
      )`);
    await queryRunner.query(`CREATE INDEX group_systems_system_idx ON group_systems (system_id)`);
    await queryRunner.query(`
      CREATE TABLE commands (
        id              uuid PRIMARY KEY,
        action          text NOT NULL CHECK (action IN ('revoke', 'restore')),
        group_id        text NOT NULL REFERENCES groups (id),
        reason          text NOT NULL,
        incident_ref    text,
        requested_by    text NOT NULL,
        requested_at    timestamptz NOT NULL,
        acknowledge_by  timestamptz NOT NULL
      )`);
    await queryRunner.query(`CREATE INDEX commands_group_idx ON commands (group_id, requested_at DESC)`);
    await queryRunner.query(`CREATE INDEX commands_requested_at_idx ON commands (requested_at DESC)`);
    await queryRunner.query(`
      CREATE TABLE command_targets (
        command_id          uuid NOT NULL REFERENCES commands (id),
        system_id           text NOT NULL REFERENCES systems (id),
        generation          bigint NOT NULL,
        desired_state       text NOT NULL CHECK (desired_state IN ('active', 'revoked')),
        changed             boolean NOT NULL,
        status              text NOT NULL
                            CHECK (status IN ('pending', 'delivered', 'enforced', 'failed', 'superseded')),
        detail              text,
        will_retry          boolean,
        principals_changed  integer,
        sessions_terminated integer,
        adapter_id          text,
        updated_at          timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (command_id, system_id)
      )`);
    await queryRunner.query(`CREATE INDEX command_targets_system_generation_idx ON command_targets (system_id, generation)`);
    await queryRunner.query(`
      CREATE TABLE acknowledgements (
        message_id          uuid PRIMARY KEY,
        command_id          uuid NOT NULL,
        system_id           text NOT NULL,
        generation          bigint NOT NULL,
        adapter_id          text NOT NULL,
        status              text NOT NULL,
        accepted            boolean NOT NULL,
        rejection_reason    text,
        occurred_at         timestamptz NOT NULL,
        received_at         timestamptz NOT NULL DEFAULT now(),
        payload             jsonb NOT NULL
      )`);
    await queryRunner.query(`CREATE INDEX acknowledgements_command_idx ON acknowledgements (command_id)`);
    await queryRunner.query(`
      CREATE TABLE outbox (
        id            bigserial PRIMARY KEY,
        topic         text NOT NULL,
        message_key   text NOT NULL,
        payload       text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        published_at  timestamptz
      )`);
    await queryRunner.query(`CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL`);
    await queryRunner.query(`
      CREATE TABLE audit_entries (
        id            bigserial PRIMARY KEY,
        occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor         text NOT NULL,
        action        text NOT NULL,
        group_id      text,
        system_id     text,
        command_id    uuid,
        reason        text,
        incident_ref  text,
        details       jsonb NOT NULL DEFAULT '{}'
      )`);
    await queryRunner.query(`CREATE INDEX audit_entries_group_idx ON audit_entries (group_id, id)`);
    await queryRunner.query(`CREATE INDEX audit_entries_system_idx ON audit_entries (system_id, id)`);
    await queryRunner.query(`CREATE INDEX audit_entries_actor_idx ON audit_entries (actor, id)`);
    await queryRunner.query(`CREATE INDEX audit_entries_command_idx ON audit_entries (command_id, id)`);
    await queryRunner.query(`CREATE INDEX audit_entries_occurred_at_idx ON audit_entries (occurred_at)`);
    // The history is append-only, whatever the application does: updates, deletes and truncation fail.
    await queryRunner.query(`
      CREATE FUNCTION audit_entries_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
      END $$`);
    await queryRunner.query(`
      CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
      FOR EACH ROW EXECUTE FUNCTION audit_entries_reject_change()`);
    await queryRunner.query(`
      CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
      FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_reject_change()`);
    await queryRunner.query(`
      CREATE TABLE adapters (
        id            text PRIMARY KEY,
        kind          text NOT NULL,
        instance_id   text NOT NULL,
        started_at    timestamptz NOT NULL,
        interval_ms   integer NOT NULL,
        last_seen_at  timestamptz NOT NULL,
        systems       jsonb NOT NULL
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of [
      'adapters',
      'audit_entries',
      'outbox',
      'acknowledgements',
      'command_targets',
      'commands',
      'group_systems',
      'groups',
      'systems',
    ]) {
      await queryRunner.query(`DROP TABLE IF EXISTS ${table}`);
    }
    await queryRunner.query(`DROP FUNCTION IF EXISTS audit_entries_reject_change()`);
  }
}
