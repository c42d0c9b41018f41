import { describeEnforcerConformance } from '@portcullis/adapter-kit/conformance';
import { readTestEnv } from '@test/support/test-env';
import { RedisTargetFixture } from './redis-target.fixture';

describeEnforcerConformance('RedisAclEnforcer', new RedisTargetFixture(readTestEnv().redis.url));
