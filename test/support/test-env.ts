import { readFileSync } from 'node:fs';

/**
 * The servers that `npm test` (deploy/run-tests.ts) started once for this whole run. Integration specs
 * read it instead of starting servers themselves.
 */
export interface TestEnvironment {
  kafka: { brokers: string[] };
  postgres: {
    /** A database for the policy service; specs create their own databases next to it. */
    policyUrl: string;
    /** Separate PostgreSQL servers (clusters) used as enforcement targets. Roles are per cluster. */
    targetUrls: string[];
  };
  /** A scratch directory for this run (adapter state directories and the like). */
  workDir: string;
}

export function readTestEnv(): TestEnvironment {
  const file = process.env.PORTCULLIS_TEST_ENV;
  if (!file) {
    throw new Error(
      'PORTCULLIS_TEST_ENV is not set: integration specs need the servers that `npm test` starts. Run them with `npm test`.',
    );
  }
  return JSON.parse(readFileSync(file, 'utf8')) as TestEnvironment;
}
