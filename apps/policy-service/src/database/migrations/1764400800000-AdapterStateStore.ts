import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What an adapter's heartbeat says of its state store (`{ status: 'ok' | 'failed', error? }`): an adapter
 * whose store failed is alive but takes and enforces no decision until it is restarted, and the centre
 * shows it as `failed`. NULL for adapters that do not report it yet.
 */
export class AdapterStateStore1764400800000 implements MigrationInterface {
  name = 'AdapterStateStore1764400800000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE adapters ADD COLUMN state_store jsonb`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE adapters DROP COLUMN state_store`);
  }
}
