import { Module, type DynamicModule } from '@nestjs/common';
import { AdapterHealthController } from './adapter-health.controller';
import type { StartableAdapter } from '../runtime/running-adapter';
import { AdapterHost, STARTABLE_ADAPTER } from './adapter.host';

/** Runs a composed adapter inside a Nest application and serves `GET /health`. */
@Module({})
export class AdapterModule {
  static forAdapter(adapter: StartableAdapter): DynamicModule {
    return {
      module: AdapterModule,
      controllers: [AdapterHealthController],
      providers: [{ provide: STARTABLE_ADAPTER, useValue: adapter }, AdapterHost],
      exports: [AdapterHost],
    };
  }
}
