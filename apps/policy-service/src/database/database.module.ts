import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { policyServiceEntities } from './entities';
import { policyServiceMigrations } from './migrations';

/** PostgreSQL through TypeORM. The checked-in migrations run on start; the schema is never synchronised. */
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [POLICY_SERVICE_CONFIG],
      useFactory: (config: PolicyServiceConfig) => ({
        type: 'postgres' as const,
        url: config.databaseUrl,
        entities: policyServiceEntities,
        migrations: policyServiceMigrations,
        migrationsRun: true,
        migrationsTransactionMode: 'each' as const,
        synchronize: false,
        extra: { max: 10, connectionTimeoutMillis: 5000, application_name: 'portcullis-policy-service' },
        retryAttempts: 10,
        retryDelay: 1000,
      }),
    }),
  ],
})
export class DatabaseModule {}
