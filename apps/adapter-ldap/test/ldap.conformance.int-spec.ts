import { describeEnforcerConformance } from '@portcullis/adapter-kit/conformance';
import { readTestEnv } from '@test/support/test-env';
import { LdapTargetFixture } from './ldap-target.fixture';

describeEnforcerConformance('LdapAccountEnforcer', new LdapTargetFixture(readTestEnv().ldap));
