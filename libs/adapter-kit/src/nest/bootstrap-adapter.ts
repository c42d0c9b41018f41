import { ConsoleLogger, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { z } from 'zod';
import type { AccessEnforcer } from '../access-enforcer';
import { loadAdapterConfig } from '../config/adapter-config.loader';
import type { AdapterLogger } from '../logging/adapter-logger';
import { describeError } from '../logging/describe-error';
import { JsonLogger } from '../logging/json.logger';
import { composeAdapter } from '../start-adapter';
import { AdapterModule } from './adapter.module';

export interface BootstrapAdapterOptions<TSystem, TSystemInput = TSystem> {
  enforcer: AccessEnforcer<TSystem>;
  systemConfigSchema: z.ZodType<TSystem, TSystemInput>;
  /** Default: `process.env` (`ADAPTER_CONFIG`, `ADAPTER_*`, `KAFKA_*`, `PORT`, `LOG_LEVEL`). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The whole `main.ts` of an adapter: loads and validates the configuration, starts the adapter in a Nest
 * application (with `GET /health` when `PORT` is set) and stops it gracefully on SIGTERM/SIGINT. If it
 * cannot start, it logs why and exits with status 1.
 */
export async function bootstrapAdapter<TSystem, TSystemInput = TSystem>(
  options: BootstrapAdapterOptions<TSystem, TSystemInput>,
): Promise<INestApplicationContext> {
  let logger: AdapterLogger = new JsonLogger();
  let app: INestApplicationContext | undefined;
  try {
    const config = loadAdapterConfig(options.env ?? process.env, options.systemConfigSchema);
    logger = new JsonLogger({ level: config.logLevel });
    const module = AdapterModule.forAdapter(composeAdapter({ enforcer: options.enforcer, config, logger }));
    const nestLogger = new ConsoleLogger({ json: true, logLevels: ['fatal', 'error', 'warn'] });
    if (config.httpPort > 0) {
      const httpApp = await NestFactory.create(module, { logger: nestLogger });
      app = httpApp;
      httpApp.enableShutdownHooks();
      await httpApp.listen(config.httpPort);
    } else {
      app = await NestFactory.createApplicationContext(module, { logger: nestLogger });
      app.enableShutdownHooks();
      await app.init();
    }
    return app;
  } catch (error) {
    logger.error('adapter failed to start', { error: describeError(error) });
    // The adapter may already be enforcing (the port was taken, say): let it finish before exiting.
    await app?.close().catch(() => undefined);
    process.exit(1);
  }
}
