import { Logger, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { policyServiceEntities } from './entities';
import { policyServiceMigrations } from './migrations';

/** Arbitrary constant naming the lock that keeps replicas starting together from migrating at the same time. */
export const MIGRATION_LOCK_KEY = 7_346_112_003;
const CONNECT_ATTEMPTS = 10;
const CONNECT_DELAY_MS = 1_000;

/**
 * Runs the checked-in migrations as the owner of the schema (`databaseMigrationUrl`, or `databaseUrl` when
 * there is no separate owner), on a short-lived connection that is closed before the service starts serving.
 * Replicas starting together take turns (advisory lock); each finds the others' migrations done.
 */
export async function runPolicyServiceMigrations(url: string, log = new Logger('Migrations')): Promise<string[]> {
  const dataSource = new DataSource({
    type: 'postgres',
    url,
    entities: policyServiceEntities,
    migrations: policyServiceMigrations,
    migrationsTransactionMode: 'each',
    synchronize: false,
    extra: { max: 2, connectionTimeoutMillis: 5000, application_name: 'portcullis-policy-service-migrations' },
  });
  for (let attempt = 1; ; attempt += 1) {
    try {
      await dataSource.initialize();
      break;
    } catch (error) {
      if (attempt >= CONNECT_ATTEMPTS) throw error;
      log.warn(`cannot connect to run migrations (${(error as Error).message}); retrying (${attempt}/${CONNECT_ATTEMPTS})`);
      await new Promise((resolve) => setTimeout(resolve, CONNECT_DELAY_MS));
    }
  }
  const lock = dataSource.createQueryRunner();
  try {
    await lock.connect();
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    if (applied.length) log.log(`applied ${applied.map((migration) => migration.name).join(', ')}`);
    return applied.map((migration) => migration.name);
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await lock.release();
    await dataSource.destroy();
  }
}

/**
 * PostgreSQL through TypeORM. The checked-in migrations run on start with the migration connection (the
 * schema is never synchronised); the service then connects as the application role, which may read and
 * write the ordinary tables but only read and append to the audit trail.
 */
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [POLICY_SERVICE_CONFIG],
      useFactory: async (config: PolicyServiceConfig) => {
        await runPolicyServiceMigrations(config.databaseMigrationUrl || config.databaseUrl);
        return {
          type: 'postgres' as const,
          url: config.databaseUrl,
          entities: policyServiceEntities,
          migrations: policyServiceMigrations,
          migrationsRun: false,
          synchronize: false,
          extra: {
            max: 10,
            connectionTimeoutMillis: 5000,
            application_name: 'portcullis-policy-service',
            // Every transaction of the service is READ COMMITTED (its locking is designed for it), set once per
            // connection rather than by a statement of its own in every transaction, whatever the server's default.
            options: '-c default_transaction_isolation=read\\ committed',
          },
          retryAttempts: 10,
          retryDelay: 1000,
        };
      },
    }),
  ],
})
export class DatabaseModule {}
