import { parsePrivateKey, publicKeyFingerprint, type SigningKey } from '@portcullis/contracts';
import { kafkaConnectionFromEnv, type KafkaConnectionConfig } from '@portcullis/kafka';
import { loadIdentitySettings, type IdentityConfig, type RateLimitConfig, type TrustProxySetting } from '../auth/identity.config';

export const POLICY_SERVICE_CONFIG = Symbol('POLICY_SERVICE_CONFIG');

export interface PolicyServiceConfig {
  /** HTTP port; 0 picks a free one (tests). */
  port: number;
  /** The application's login role (a member of `portcullis_app`: it cannot change or delete audit entries). */
  databaseUrl: string;
  /**
   * Owner (or superuser) connection used only to run the migrations at start (`DATABASE_MIGRATION_URL`);
   * when absent, migrations run with `databaseUrl`.
   */
  databaseMigrationUrl?: string;
  /** How often the audit chain head is signed into a checkpoint (`AUDIT_CHECKPOINT_INTERVAL_MS`, default 60 s). */
  auditCheckpointIntervalMs?: number;
  kafka: KafkaConnectionConfig;
  /** Consumer group of the policy service (acknowledgements and heartbeats). */
  consumerGroupId: string;
  /** Create missing topics with their settings at start (off where the cluster's owner manages topics). */
  ensureTopics: boolean;
  /** Partitions for topics created by `ensureTopics`. */
  topicPartitions: number;
  /**
   * Local HS256 tokens (`npm run token`). `jwtSecret` is '' when JWT_SECRET is not set, which is allowed only
   * with single sign-on (`identity.oidc`); local tokens are then refused.
   */
  auth: { jwtSecret: string; issuer: string; audience: string };
  /** Single sign-on (tokens from an identity provider, via its JWKS) and API keys; see auth/identity.config.ts. */
  identity: IdentityConfig;
  /** Failed authentications per source address, sensitive routes per caller. */
  rateLimits: RateLimitConfig;
  /** Express `trust proxy` (`HTTP_TRUST_PROXY`): which proxies' X-Forwarded-For gives the client address. */
  trustProxy: TrustProxySetting;
  /** A system that has not acknowledged a command within this many seconds makes it `overdue`. */
  acknowledgementDeadlineSeconds: number;
  /** An adapter without a heartbeat for this many intervals is shown as `stale`. */
  adapterStaleAfterIntervals: number;
  /** Safety sweep of the outbox; publishing is normally woken at once by NOTIFY. */
  outboxSweepIntervalMs: number;
  /**
   * Published outbox rows are deleted this many hours after they were published (`OUTBOX_RETENTION_HOURS`,
   * default `DEFAULT_OUTBOX_RETENTION_HOURS`); 0 keeps them for ever. Unpublished rows are never deleted.
   */
  outboxRetentionHours?: number;
  /** How often the outbox is pruned (`OUTBOX_PRUNE_INTERVAL_MS`, default `DEFAULT_OUTBOX_PRUNE_INTERVAL_MS`). */
  outboxPruneIntervalMs?: number;
  /** A restore request not approved within this many seconds expires (`RESTORE_REQUEST_TTL_SECONDS`). */
  restoreRequestTtlSeconds: number;
  /** Signs every published decision and audit checkpoint (Ed25519); adapters trust its public half. */
  signing: SigningKey;
  /**
   * How long a published decision stays valid for adapters (`expiresAt`). The current decision of each
   * system is re-issued when less than half of this is left, so it never lapses while the service runs.
   */
  commandTtlSeconds: number;
}

/** 7 days. */
export const DEFAULT_OUTBOX_RETENTION_HOURS = 168;
/** Hourly. */
export const DEFAULT_OUTBOX_PRUNE_INTERVAL_MS = 3_600_000;

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
  const databaseMigrationUrl = env.DATABASE_MIGRATION_URL || undefined;
  if (databaseMigrationUrl && !/^postgres(ql)?:\/\//.test(databaseMigrationUrl)) {
    problems.push('DATABASE_MIGRATION_URL must be a postgres:// URL');
  }
  let auditCheckpointIntervalMs = 60_000;
  try {
    auditCheckpointIntervalMs = integer(env, 'AUDIT_CHECKPOINT_INTERVAL_MS', 60_000, 100, 86_400_000);
  } catch (error) {
    problems.push((error as Error).message);
  }
  const jwtSecret = env.JWT_SECRET ?? '';
  if (jwtSecret ? jwtSecret.length < 32 : !env.OIDC_JWKS_URL) {
    problems.push('JWT_SECRET must be at least 32 characters (it may be left unset only when OIDC_JWKS_URL is set)');
  }
  // With single sign-on, whoever holds JWT_SECRET could mint any user (a second "security lead" for four
  // eyes, say): local tokens alongside SSO only on purpose.
  if (jwtSecret && env.OIDC_JWKS_URL && env.ALLOW_LOCAL_TOKENS !== 'true') {
    problems.push('JWT_SECRET and OIDC_JWKS_URL are both set: unset JWT_SECRET, or set ALLOW_LOCAL_TOKENS=true to keep local tokens beside single sign-on');
  }
  const identitySettings = loadIdentitySettings(env, problems);
  let signing: SigningKey | undefined;
  if (!env.SIGNING_KEY) {
    problems.push('SIGNING_KEY must be an Ed25519 private key (PKCS#8 PEM text or the path of a PEM file); `npm run keys:generate` makes one');
  } else {
    try {
      const privateKey = parsePrivateKey(env.SIGNING_KEY);
      signing = { keyId: env.SIGNING_KEY_ID || `policy-${publicKeyFingerprint(privateKey)}`, privateKey };
    } catch (error) {
      problems.push(`SIGNING_KEY: ${(error as Error).message}`);
    }
  }
  let kafka: KafkaConnectionConfig | undefined;
  try {
    kafka = kafkaConnectionFromEnv(env, 'policy-service');
    if (kafka.brokers.length === 0) problems.push('KAFKA_BROKERS must list at least one broker');
  } catch (error) {
    problems.push((error as Error).message);
  }
  let numbers: Pick<
    PolicyServiceConfig,
    | 'port'
    | 'acknowledgementDeadlineSeconds'
    | 'adapterStaleAfterIntervals'
    | 'outboxSweepIntervalMs'
    | 'outboxRetentionHours'
    | 'outboxPruneIntervalMs'
    | 'topicPartitions'
    | 'restoreRequestTtlSeconds' | 'commandTtlSeconds'
  > | null = null;
  try {
    numbers = {
      port: integer(env, 'PORT', 3000, 0, 65535),
      acknowledgementDeadlineSeconds: integer(env, 'ACK_DEADLINE_SECONDS', 60, 1, 86400),
      adapterStaleAfterIntervals: integer(env, 'ADAPTER_STALE_AFTER_INTERVALS', 3, 1, 1000),
      outboxSweepIntervalMs: integer(env, 'OUTBOX_SWEEP_INTERVAL_MS', 5000, 100, 600000),
      outboxRetentionHours: integer(env, 'OUTBOX_RETENTION_HOURS', DEFAULT_OUTBOX_RETENTION_HOURS, 0, 10 * 8760),
      outboxPruneIntervalMs: integer(env, 'OUTBOX_PRUNE_INTERVAL_MS', DEFAULT_OUTBOX_PRUNE_INTERVAL_MS, 1000, 86_400_000),
      topicPartitions: integer(env, 'KAFKA_TOPIC_PARTITIONS', 6, 1, 1000),
      restoreRequestTtlSeconds: integer(env, 'RESTORE_REQUEST_TTL_SECONDS', 3600, 1, 7 * 86400),
      commandTtlSeconds: integer(env, 'COMMAND_TTL_SECONDS', 7 * 86400, 60, 365 * 86400),
    };
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (problems.length > 0 || !kafka || !numbers || !signing) {
    throw new InvalidConfigurationError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
  return {
    ...numbers,
    ...identitySettings,
    databaseUrl,
    databaseMigrationUrl,
    auditCheckpointIntervalMs,
    kafka,
    signing,
    consumerGroupId: env.KAFKA_GROUP_ID ?? 'portcullis-policy-service',
    ensureTopics: (env.KAFKA_ENSURE_TOPICS ?? 'true') === 'true',
    auth: {
      jwtSecret,
      issuer: env.JWT_ISSUER ?? 'portcullis-local',
      audience: env.JWT_AUDIENCE ?? 'portcullis',
    },
  };
}
