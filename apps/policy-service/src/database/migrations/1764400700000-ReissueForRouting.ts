import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Decisions published before they were routed by adapter (1764400500000-OutboxRoutes) sit in the partition
 * of their system id, which adapters no longer read: an adapter starting fresh would find no decision for
 * such a system until its re-issue fell due (up to half of `COMMAND_TTL_SECONDS`, days). This makes every
 * system's current decision due for re-issue at once: the re-issuer (DesiredStateReissuer) takes a
 * decision as due when `COALESCE(reissued_at of the current generation, decided_at, requested_at)` is
 * older than half its validity, so recording a re-issue of the current generation at the epoch makes every
 * current decision due. Its first pass runs about a second after the service starts and re-publishes them
 * all, signed anew, through the outbox — routed, so each lands in its adapter's partition.
 *
 * Only the re-issue bookkeeping changes: commands and their history are untouched. A decision made after
 * this migration has a new generation, does not match the row, and is routed already.
 */
export class ReissueForRouting1764400700000 implements MigrationInterface {
  name = 'ReissueForRouting1764400700000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      INSERT INTO desired_state_reissues (system_id, generation, reissued_at)
      SELECT id, generation, 'epoch' FROM systems WHERE desired_command_id IS NOT NULL
      ON CONFLICT (system_id) DO UPDATE SET generation = EXCLUDED.generation, reissued_at = EXCLUDED.reissued_at`);
  }

  async down(): Promise<void> {
    // Nothing to undo: re-issuing a current decision once more is harmless.
  }
}
