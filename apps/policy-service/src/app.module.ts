import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { AcknowledgementsModule } from './acknowledgements/acknowledgements.module';
import { AdaptersModule } from './adapters/adapters.module';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { CommandsModule } from './commands/commands.module';
import { ConfigModule } from './config/config.module';
import type { PolicyServiceConfig } from './config/policy-service.config';
import { DatabaseModule } from './database/database.module';
import { DomainErrorFilter } from './errors/domain-error.filter';
import { GroupsModule } from './groups/groups.module';
import { HealthModule } from './health/health.module';
import { KafkaModule } from './kafka/kafka.module';
import { OutboxModule } from './outbox/outbox.module';
import { SystemsModule } from './systems/systems.module';

@Module({})
export class PolicyServiceModule {
  static forRoot(config: PolicyServiceConfig): DynamicModule {
    return {
      module: PolicyServiceModule,
      imports: [
        ConfigModule.forRoot(config),
        DatabaseModule,
        KafkaModule,
        AuthModule,
        AuditModule,
        OutboxModule,
        SystemsModule,
        GroupsModule,
        CommandsModule,
        AcknowledgementsModule,
        AdaptersModule,
        HealthModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: DomainErrorFilter }],
    };
  }
}
