import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The targets still open (pending, delivered, failed), by system and generation. Each decision marks the
 * open targets of its systems that an older generation left `superseded`; through the full
 * (system_id, generation) index that statement visited every target a system ever had, so a decision got
 * slower with each one before it (bench/README.md, finding 25). Few targets are open at any time, and this
 * index holds only those.
 */
export class OpenTargetsIndex1764400900000 implements MigrationInterface {
  name = 'OpenTargetsIndex1764400900000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE INDEX command_targets_open_idx ON command_targets (system_id, generation) WHERE status IN ('pending', 'delivered', 'failed')`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX command_targets_open_idx`);
  }
}
