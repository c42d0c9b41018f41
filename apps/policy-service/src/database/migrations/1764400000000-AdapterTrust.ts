import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Which adapter may enforce each system, the adapters' public keys (their acknowledgements must be
 * signed by one), refused security-relevant reports from adapters, and the re-issue bookkeeping that keeps
 * every system's current signed decision from expiring.
 */
export class AdapterTrust1764400000000 implements MigrationInterface {
  name = 'AdapterTrust1764400000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE systems ADD COLUMN adapter_id text NOT NULL DEFAULT 'unassigned'`);
    await queryRunner.query(`ALTER TABLE systems ALTER COLUMN adapter_id DROP DEFAULT`);
    await queryRunner.query(`CREATE INDEX systems_adapter_id ON systems (adapter_id)`);
    await queryRunner.query(`
      CREATE TABLE adapter_keys (
        adapter_id text NOT NULL,
        key_id text NOT NULL,
        public_key text NOT NULL,
        fingerprint text NOT NULL,
        registered_by text NOT NULL,
        registered_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        revoked_by text,
        PRIMARY KEY (adapter_id, key_id)
      )`);
    await queryRunner.query(`
      CREATE TABLE security_alerts (
        message_id uuid PRIMARY KEY,
        adapter_id text NOT NULL,
        system_id text NOT NULL,
        reason text NOT NULL,
        severity text NOT NULL,
        verified boolean NOT NULL,
        detail text NOT NULL,
        occurred_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        payload jsonb NOT NULL
      )`);
    await queryRunner.query(`CREATE INDEX security_alerts_received_at ON security_alerts (received_at DESC)`);
    await queryRunner.query(`
      CREATE TABLE desired_state_reissues (
        system_id text PRIMARY KEY REFERENCES systems (id),
        generation bigint NOT NULL,
        reissued_at timestamptz NOT NULL
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE desired_state_reissues`);
    await queryRunner.query(`DROP TABLE security_alerts`);
    await queryRunner.query(`DROP TABLE adapter_keys`);
    await queryRunner.query(`ALTER TABLE systems DROP COLUMN adapter_id`);
  }
}
