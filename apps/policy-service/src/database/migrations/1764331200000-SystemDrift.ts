import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Where an adapter last found a system out of its desired state (access restored out of band). */
export class SystemDrift1764331200000 implements MigrationInterface {
  name = 'SystemDrift1764331200000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE systems ADD COLUMN last_drift_at timestamptz, ADD COLUMN last_drift_detail text`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE systems DROP COLUMN last_drift_at, DROP COLUMN last_drift_detail`);
  }
}
