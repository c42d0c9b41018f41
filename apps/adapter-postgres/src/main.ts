import { bootstrapAdapter } from '@portcullis/adapter-kit';
import { PostgresRoleEnforcer } from './postgres-role.enforcer';
import { PostgresSystemConfigSchema } from './postgres-system.config';

void bootstrapAdapter({ enforcer: new PostgresRoleEnforcer(), systemConfigSchema: PostgresSystemConfigSchema });
