import { Global, Module, type DynamicModule } from '@nestjs/common';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from './policy-service.config';

/** Provides the validated configuration, loaded once before the application is created. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: PolicyServiceConfig): DynamicModule {
    return {
      module: ConfigModule,
      global: true,
      providers: [{ provide: POLICY_SERVICE_CONFIG, useValue: config }],
      exports: [POLICY_SERVICE_CONFIG],
    };
  }
}
