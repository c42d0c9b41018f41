import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The targets still open (pending, delivered, failed), by system and generation. Each decision marks the
 * open targets of its systems that an older generation left `superseded`; through the full
 * (system_id, generation) index that statement visited every target a system ever had, so a decision got
 * slower with each one before it (bench/README.md, finding 25). Few targets are open at any time, and this
 * index holds only those. (Its predicate names `status`, so an acknowledgement's status change is no
 * longer a heap-only update: measured, the decisions' saving outweighs it.)
 *
 * Built CONCURRENTLY, outside a transaction: `command_targets` holds every target ever decided, and a plain
 * build would hold up every revoke and acknowledgement while it runs. A build that failed half-way leaves an
 * invalid index behind, which the next attempt drops first.
 */
export class OpenTargetsIndex1764400900000 implements MigrationInterface {
  name = 'OpenTargetsIndex1764400900000';
  transaction = false;

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX CONCURRENTLY IF EXISTS command_targets_open_idx`);
    await queryRunner.query(
      `CREATE INDEX CONCURRENTLY command_targets_open_idx ON command_targets (system_id, generation) ` +
        `WHERE status IN ('pending', 'delivered', 'failed')`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX CONCURRENTLY IF EXISTS command_targets_open_idx`);
  }
}
