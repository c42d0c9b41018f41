import { readFileSync } from 'node:fs';

/**
 * The servers that `npm test` (deploy/run-tests.ts) started once for this whole run. Integration specs
 * read it instead of starting servers themselves.
 */
export interface KafkaTestUser {
  username: string;
  password: string;
}

export interface TestEnvironment {
  kafka: {
    /**
     * The broker's unauthenticated PLAINTEXT listener on 127.0.0.1 (a super user, no ACLs apply): for
     * setup and for specs that play an attacker with network access. Never for the services under test.
     */
    brokers: string[];
    /** The SASL/SCRAM-SHA-512 listener, where ACLs apply (deploy/kafka/acls.ts), and its users. */
    sasl: {
      brokers: string[];
      mechanism: 'scram-sha-512';
      /** The policy service's user. */
      policyService: KafkaTestUser;
      /** The user every spec's adapter uses (consumer groups `portcullis-adapter.*`). */
      adapter: KafkaTestUser;
      /** A super user. */
      admin: KafkaTestUser;
    };
    /** The same users over TLS (SASL_SSL); the certificate is signed by the run's throwaway CA, `caFile` (PEM). */
    tls: { brokers: string[]; caFile: string };
  };
  postgres: {
    /** A database for the policy service; specs create their own databases next to it. */
    policyUrl: string;
    /** Separate PostgreSQL servers (clusters) used as enforcement targets. Roles are per cluster. */
    targetUrls: string[];
  };
  /** An OpenLDAP directory with the ppolicy overlay, as an enforcement target. */
  ldap: { url: string; baseDn: string; bindDn: string; bindPassword: string };
  /** A Redis server (ACL users), as an enforcement target. */
  redis: { url: string };
  /** Where to POST runner actions such as `kafka/restart` (see `testServers`). */
  controlUrl: string;
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

/** `brokers` and `sasl` of a Kafka connection through the SASL listener as one of the run's users. */
export function kafkaAs(env: TestEnvironment, user: 'policyService' | 'adapter' | 'admin') {
  const { brokers, mechanism } = env.kafka.sasl;
  const { username, password } = env.kafka.sasl[user];
  return { brokers, sasl: { mechanism, username, password } };
}

/** Actions on the run's shared servers, carried out by the test runner that owns them. */
export function testServers(env: TestEnvironment) {
  const act = async (action: string) => {
    const response = await fetch(`${env.controlUrl}/${action}`, { method: 'POST' });
    if (!response.ok) throw new Error(`${action} failed: ${response.status} ${await response.text()}`);
  };
  return {
    kafka: {
      stop: () => act('kafka/stop'),
      kill: () => act('kafka/kill'),
      start: () => act('kafka/start'),
    },
    redis: {
      kill: () => act('redis/kill'),
      start: () => act('redis/start'),
    },
  };
}
