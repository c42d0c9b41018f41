import { bootstrapAdapter } from '@portcullis/adapter-kit';
import { LdapAccountEnforcer } from './ldap-account.enforcer';
import { LdapSystemConfigSchema } from './ldap-system.config';

void bootstrapAdapter({ enforcer: new LdapAccountEnforcer(), systemConfigSchema: LdapSystemConfigSchema });
