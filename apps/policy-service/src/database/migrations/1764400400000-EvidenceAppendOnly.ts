import type { MigrationInterface, QueryRunner } from 'typeorm';
import { APP_ROLE } from './1764400150000-AppRoleGrants';

/**
 * What adapters reported is evidence too: the application may read and add acknowledgements and
 * security alerts, never change or remove them (it records a re-delivery with ON CONFLICT DO NOTHING,
 * which needs no UPDATE).
 */
export class EvidenceAppendOnly1764400400000 implements MigrationInterface {
  name = 'EvidenceAppendOnly1764400400000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`REVOKE UPDATE, DELETE, TRUNCATE ON acknowledgements, security_alerts FROM ${APP_ROLE}`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`GRANT UPDATE, DELETE ON acknowledgements, security_alerts TO ${APP_ROLE}`);
  }
}
