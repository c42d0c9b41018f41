import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { policyServiceEntities } from './entities';
import { policyServiceMigrations } from './migrations';

/** For the TypeORM CLI (`npm run migration:show`, `migration:run`, `migration:revert`). */
export default new DataSource({
  type: 'postgres',
  url: process.env.DATABASE_URL,
  entities: policyServiceEntities,
  migrations: policyServiceMigrations,
});
