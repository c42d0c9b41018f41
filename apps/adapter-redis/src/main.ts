import { bootstrapAdapter } from '@portcullis/adapter-kit';
import { RedisAclEnforcer } from './redis-acl.enforcer';
import { RedisSystemConfigSchema } from './redis-system.config';

void bootstrapAdapter({ enforcer: new RedisAclEnforcer(), systemConfigSchema: RedisSystemConfigSchema });
