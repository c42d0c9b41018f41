import type { MigrationInterface, QueryRunner } from 'typeorm';
import { APP_ROLE } from './1764400150000-AppRoleGrants';

/**
 * The messages the outbox relay may have published more than once, so that a refused copy of one is
 * explained instead of raised as an attack (outbox/uncertain-sends.ts):
 * - `outbox_uncertain_sends`: a message of a send that failed (the broker may have written it all the
 *   same, and the relay sends it again) or that was unpublished when a relay became leader (a relay before
 *   it may have sent it and stopped before marking it published). Written only on those paths, never on a
 *   send that succeeds; not pruned: it grows by failed sends and takeover backlogs only. A send that failed
 *   before anything left (the broker down) is noted too: the relay cannot tell, so its messages stay
 *   explainable, which weakens nothing but the log level of a later replay of exactly those messages.
 * - `security_alerts.explanation`: what the service knows about an alert's record (NULL: nothing).
 */
export class OutboxUncertainSends1764401100000 implements MigrationInterface {
  name = 'OutboxUncertainSends1764401100000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE outbox_uncertain_sends (
        message_id  uuid PRIMARY KEY,
        outbox_id   bigint NOT NULL,
        message_key text NOT NULL,
        noted_at    timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`GRANT SELECT, INSERT ON outbox_uncertain_sends TO ${APP_ROLE}`);
    await queryRunner.query(`REVOKE UPDATE, DELETE, TRUNCATE ON outbox_uncertain_sends FROM ${APP_ROLE}`);
    await queryRunner.query(`ALTER TABLE security_alerts ADD COLUMN explanation text`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE security_alerts DROP COLUMN explanation`);
    await queryRunner.query(`DROP TABLE outbox_uncertain_sends`);
  }
}
