import type { INestApplication } from '@nestjs/common';
import { randomBytes, randomUUID } from 'node:crypto';
import { sign } from 'jsonwebtoken';
import { Client, Pool } from 'pg';
import request from 'supertest';
import type { PolicyServiceConfig } from '../../apps/policy-service/src/config/policy-service.config';
import { APP_ROLE, createAppRoleSql } from '../../apps/policy-service/src/database/migrations/1764400150000-AppRoleGrants';
import { createPolicyService } from '../../apps/policy-service/src/policy-service.app';
import { kafkaAs, type TestEnvironment } from './test-env';
import { testKeys } from './test-keys';

export interface RunningPolicyService {
  app: INestApplication;
  config: PolicyServiceConfig;
  /**
   * Direct access to the service's own database, for assertions, as the superuser that migrates it
   * (`config.databaseMigrationUrl`); the service itself runs as a restricted login role (`config.databaseUrl`).
   */
  db: Pool;
  http: () => ReturnType<typeof request>;
  token(sub: string, ...roles: string[]): string;
  /** Stops the service (its database stays, so it can be started again on the same data). */
  stop(): Promise<void>;
  /** Starts the service again on the same database and consumer group (a restart). */
  restart(): Promise<void>;
}

/** Creates an empty database next to the run's policy database and returns its URL. */
export async function createScratchDatabase(env: TestEnvironment, prefix: string): Promise<string> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: env.postgres.policyUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(env.postgres.policyUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * A login role for the service, member of the group role `portcullis_app` (created here if missing: roles are
 * per server and the migrations grant it its privileges in each database), so every spec runs the service
 * with production's restricted privileges. Returns `databaseUrl` with that role's credentials.
 */
export async function createAppLoginRole(env: TestEnvironment, databaseUrl: string): Promise<string> {
  const role = `portcullis_service_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(16).toString('hex');
  const admin = new Client({ connectionString: env.postgres.policyUrl });
  await admin.connect();
  try {
    await admin.query(createAppRoleSql());
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' IN ROLE ${APP_ROLE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(databaseUrl);
  url.username = role;
  url.password = password;
  return url.toString();
}

/**
 * A policy service on its own fresh database and consumer group, listening on a free port, with the
 * run's real Kafka broker. The schema comes from the real migrations.
 */
export async function startPolicyService(
  env: TestEnvironment,
  overrides: Partial<PolicyServiceConfig> = {},
): Promise<RunningPolicyService> {
  const ownerUrl = await createScratchDatabase(env, 'policy');
  const config: PolicyServiceConfig = {
    port: 0,
    databaseUrl: await createAppLoginRole(env, ownerUrl),
    databaseMigrationUrl: ownerUrl,
    kafka: { ...kafkaAs(env, 'policyService'), clientId: `policy-service-test-${randomUUID().slice(0, 8)}` },
    consumerGroupId: `policy-service-test-${randomUUID()}`,
    ensureTopics: false,
    topicPartitions: 3,
    auth: { jwtSecret: randomBytes(32).toString('hex'), issuer: 'portcullis-test', audience: 'portcullis' },
    identity: { clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 86400, oidc: null, apiKeyLastUsedIntervalSeconds: 60 },
    // Generous: specs that do not test limits must never meet them (identity.int-spec.ts tests them).
    rateLimits: { authFailureLimit: 1000, authFailureWindowSeconds: 60, authFailureAuditWindowSeconds: 60, sensitiveLimit: 1000, sensitiveWindowSeconds: 60 },
    trustProxy: false,
    acknowledgementDeadlineSeconds: 60,
    adapterStaleAfterIntervals: 3,
    outboxSweepIntervalMs: 5000,
    signing: testKeys.policy,
    commandTtlSeconds: 3600,
    restoreRequestTtlSeconds: 3600,
    ...overrides,
  };
  const db = new Pool({ connectionString: config.databaseMigrationUrl ?? config.databaseUrl, max: 3 });
  let app = await createPolicyService(config, { logger: ['error', 'fatal'] });
  const running: RunningPolicyService = {
    get app() {
      return app;
    },
    config,
    db,
    http: () => request(app.getHttpServer()),
    token: (sub, ...roles) =>
      sign({ roles }, config.auth.jwtSecret, {
        subject: sub,
        issuer: config.auth.issuer,
        audience: config.auth.audience,
        expiresIn: '1h',
        algorithm: 'HS256',
      }),
    stop: async () => {
      await app.close();
    },
    restart: async () => {
      app = await createPolicyService(config, { logger: ['error', 'fatal'] });
    },
  };
  return running;
}
