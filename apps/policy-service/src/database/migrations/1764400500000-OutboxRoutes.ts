import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Decisions are routed to the partition of the adapter that enforces them (libs/kafka partition-routing),
 * so an adapter reads only its own partition. The route is stored with each outgoing message; NULL means
 * "by key", which is how messages written before this migration are published.
 */
export class OutboxRoutes1764400500000 implements MigrationInterface {
  name = 'OutboxRoutes1764400500000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE outbox ADD COLUMN partition_key text`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE outbox DROP COLUMN partition_key`);
  }
}
