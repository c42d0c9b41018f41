/**
 * A real PostgreSQL adapter process that kills itself (SIGKILL) the first time a revoke has changed the
 * target, before it can record or acknowledge the result: the crash window the intent journal exists for.
 *
 *   tsx test/support/crashing-postgres-adapter.ts <adapter-config.json>
 */
import { readFileSync } from 'node:fs';
import type { EnforcementContext } from '@portcullis/adapter-kit';
import { PostgresRoleEnforcer } from '../../apps/adapter-postgres/src/postgres-role.enforcer';
import type { PostgresSystemConfig } from '../../apps/adapter-postgres/src/postgres-system.config';
import { startPostgresAdapter, type PostgresAdapterConfig } from './postgres-adapter';

class CrashAfterRevokeEnforcer extends PostgresRoleEnforcer {
  override async revoke(context: EnforcementContext<PostgresSystemConfig>) {
    const result = await super.revoke(context);
    if (result.outcome === 'applied') process.kill(process.pid, 'SIGKILL');
    return result;
  }
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf8')) as PostgresAdapterConfig;
void startPostgresAdapter(config, new CrashAfterRevokeEnforcer());
