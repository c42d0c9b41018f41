import { JsonLogger, startAdapter, type AdapterConfigInput, type RunningAdapter } from '@portcullis/adapter-kit';
import { PostgresRoleEnforcer } from '../../apps/adapter-postgres/src/postgres-role.enforcer';
import { PostgresSystemConfigSchema, type PostgresSystemConfig } from '../../apps/adapter-postgres/src/postgres-system.config';
import type { z } from 'zod';
import { kafkaAs, type TestEnvironment } from './test-env';
import { testKeys } from './test-keys';

export type PostgresAdapterConfig = AdapterConfigInput<z.input<typeof PostgresSystemConfigSchema>>;

/** Settings that make a spec's adapter quick to react; `systems` maps system ids to target URLs. */
export function postgresAdapterConfig(
  env: TestEnvironment,
  adapterId: string,
  stateDir: string,
  systems: Record<string, string>,
): PostgresAdapterConfig {
  return {
    adapterId,
    stateDir,
    heartbeatIntervalMs: 1_000,
    retry: { initialMs: 200, maxMs: 2_000 },
    ...testKeys.adapterSettings(adapterId),
    kafka: { ...kafkaAs(env, 'adapter'), clientId: adapterId },
    systems: Object.fromEntries(Object.entries(systems).map(([systemId, url]) => [systemId, { url }])),
  };
}

/** A PostgreSQL adapter in this process (the real runtime and enforcer; only the process is shared). */
export function startPostgresAdapter(
  config: PostgresAdapterConfig,
  enforcer: PostgresRoleEnforcer = new PostgresRoleEnforcer(),
): Promise<RunningAdapter> {
  return startAdapter<PostgresSystemConfig, z.input<typeof PostgresSystemConfigSchema>>({
    enforcer,
    systemConfigSchema: PostgresSystemConfigSchema,
    logger: new JsonLogger({ level: 'error' }),
    config,
  });
}
