import { InitialSchema1764320400000 } from './1764320400000-InitialSchema';
import { SystemDrift1764331200000 } from './1764331200000-SystemDrift';

/** Every migration, in order. Listed explicitly so the bundled service needs no file globbing. */
export const policyServiceMigrations = [InitialSchema1764320400000, SystemDrift1764331200000];
