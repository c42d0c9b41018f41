import { describeEnforcerConformance } from '@portcullis/adapter-kit/conformance';
import { readTestEnv } from '@test/support/test-env';
import { PostgresTargetFixture } from './postgres-target.fixture';

describeEnforcerConformance('PostgresRoleEnforcer', new PostgresTargetFixture(readTestEnv().postgres.targetUrls[0]));
