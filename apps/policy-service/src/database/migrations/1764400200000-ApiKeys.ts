import type { MigrationInterface, QueryRunner } from 'typeorm';
import { APP_ROLE } from './1764400150000-AppRoleGrants';

/**
 * API keys for automation (a SOAR playbook, say). Only the SHA-256 of a key is stored; the key itself is
 * shown to its creator once. A revoked key keeps its row (who created and revoked it, when it was last used)
 * as evidence: the application may update a key (revoke it, record its use) but not delete it.
 */
export class ApiKeys1764400200000 implements MigrationInterface {
  name = 'ApiKeys1764400200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE api_keys (
        id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
        name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
        roles           text[] NOT NULL
                        CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['security-lead', 'auditor', 'admin']::text[]),
        secret_hash     bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
        created_by      text NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now(),
        expires_at      timestamptz,
        revoked_at      timestamptz,
        revoked_by      text,
        last_used_at    timestamptz,
        last_used_from  text,
        CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
      )`);
    // A name identifies one key in use at a time; a revoked key's name can be given to its replacement.
    await queryRunner.query(`CREATE UNIQUE INDEX api_keys_name_in_use_idx ON api_keys (name) WHERE revoked_at IS NULL`);
    await queryRunner.query(`REVOKE DELETE, TRUNCATE ON api_keys FROM ${APP_ROLE}`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('DROP TABLE api_keys');
  }
}
