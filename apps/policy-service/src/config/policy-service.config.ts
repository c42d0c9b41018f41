import { kafkaConnectionFromEnv, type KafkaConnectionConfig } from '@portcullis/kafka';

export const POLICY_SERVICE_CONFIG = Symbol('POLICY_SERVICE_CONFIG');

export interface PolicyServiceConfig {
  /** HTTP port; 0 picks a free one (tests). */
  port: number;
  databaseUrl: string;
  kafka: KafkaConnectionConfig;
  /** Consumer group of the policy service (acknowledgements and heartbeats). */
  consumerGroupId: string;
  /** Create missing topics with their settings at start (off where the cluster's owner manages topics). */
  ensureTopics: boolean;
  /** Partitions for topics created by `ensureTopics`. */
  topicPartitions: number;
  auth: { jwtSecret: string; issuer: string; audience: string };
  /** A system that has not acknowledged a command within this many seconds makes it `overdue`. */
  acknowledgementDeadlineSeconds: number;
  /** An adapter without a heartbeat for this many intervals is shown as `stale`. */
  adapterStaleAfterIntervals: number;
  /** Safety sweep of the outbox; publishing is normally woken at once by NOTIFY. */
  outboxSweepIntervalMs: number;
}

export class InvalidConfigurationError extends Error {
  override readonly name = 'InvalidConfigurationError';
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidConfigurationError(`${name} must be an integer between ${min} and ${max}, not "${raw}"`);
  }
  return value;
}

/** Reads and validates the whole configuration once, at start; a bad setting stops the service with a clear message. */
export function loadPolicyServiceConfig(env: NodeJS.ProcessEnv = process.env): PolicyServiceConfig {
  const problems: string[] = [];
  const databaseUrl = env.DATABASE_URL ?? '';
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) problems.push('DATABASE_URL must be a postgres:// URL');
  const jwtSecret = env.JWT_SECRET ?? '';
  if (jwtSecret.length < 32) problems.push('JWT_SECRET must be at least 32 characters');
  let kafka: KafkaConnectionConfig | undefined;
  try {
    kafka = kafkaConnectionFromEnv(env, 'policy-service');
    if (kafka.brokers.length === 0) problems.push('KAFKA_BROKERS must list at least one broker');
  } catch (error) {
    problems.push((error as Error).message);
  }
  let numbers: Pick<
    PolicyServiceConfig,
    'port' | 'acknowledgementDeadlineSeconds' | 'adapterStaleAfterIntervals' | 'outboxSweepIntervalMs' | 'topicPartitions'
  > | null = null;
  try {
    numbers = {
      port: integer(env, 'PORT', 3000, 0, 65535),
      acknowledgementDeadlineSeconds: integer(env, 'ACK_DEADLINE_SECONDS', 60, 1, 86400),
      adapterStaleAfterIntervals: integer(env, 'ADAPTER_STALE_AFTER_INTERVALS', 3, 1, 1000),
      outboxSweepIntervalMs: integer(env, 'OUTBOX_SWEEP_INTERVAL_MS', 5000, 100, 600000),
      topicPartitions: integer(env, 'KAFKA_TOPIC_PARTITIONS', 6, 1, 1000),
    };
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (problems.length > 0 || !kafka || !numbers) {
    throw new InvalidConfigurationError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return {
    ...numbers,
    databaseUrl,
    kafka,
    consumerGroupId: env.KAFKA_GROUP_ID ?? 'portcullis-policy-service',
    ensureTopics: (env.KAFKA_ENSURE_TOPICS ?? 'true') === 'true',
    auth: {
      jwtSecret,
      issuer: env.JWT_ISSUER ?? 'portcullis-local',
      audience: env.JWT_AUDIENCE ?? 'portcullis',
    },
  };
}
