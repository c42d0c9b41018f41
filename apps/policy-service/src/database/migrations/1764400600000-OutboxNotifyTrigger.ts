import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The database wakes the outbox relay itself: a statement-level trigger notifies `portcullis_outbox`
 * (`OUTBOX_CHANNEL`) after every insert into the outbox, delivered at commit like any NOTIFY. Writers no
 * longer send `SELECT pg_notify(...)` as a statement of their own (one round trip less per decision), and
 * no writer can forget it.
 */
export class OutboxNotifyTrigger1764400600000 implements MigrationInterface {
  name = 'OutboxNotifyTrigger1764400600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('portcullis_outbox', NULL);
        RETURN NULL;
      END
      $$`);
    await queryRunner.query(`CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TRIGGER outbox_notify ON outbox`);
    await queryRunner.query(`DROP FUNCTION outbox_notify()`);
  }
}
