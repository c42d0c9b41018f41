import type { INestApplication } from '@nestjs/common';
import { randomBytes, randomUUID } from 'node:crypto';
import { sign } from 'jsonwebtoken';
import { Client, Pool } from 'pg';
import request from 'supertest';
import type { PolicyServiceConfig } from '../../apps/policy-service/src/config/policy-service.config';
import { createPolicyService } from '../../apps/policy-service/src/policy-service.app';
import type { TestEnvironment } from './test-env';

export interface RunningPolicyService {
  app: INestApplication;
  config: PolicyServiceConfig;
  /** Direct access to the service's own database, for assertions. */
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
 * A policy service on its own fresh database and consumer group, listening on a free port, with the
 * run's real Kafka broker. The schema comes from the real migrations.
 */
export async function startPolicyService(
  env: TestEnvironment,
  overrides: Partial<PolicyServiceConfig> = {},
): Promise<RunningPolicyService> {
  const config: PolicyServiceConfig = {
    port: 0,
    databaseUrl: await createScratchDatabase(env, 'policy'),
    kafka: { brokers: env.kafka.brokers, clientId: `policy-service-test-${randomUUID().slice(0, 8)}` },
    consumerGroupId: `policy-service-test-${randomUUID()}`,
    ensureTopics: false,
    topicPartitions: 3,
    auth: { jwtSecret: randomBytes(32).toString('hex'), issuer: 'portcullis-test', audience: 'portcullis' },
    acknowledgementDeadlineSeconds: 60,
    adapterStaleAfterIntervals: 3,
    outboxSweepIntervalMs: 5000,
    ...overrides,
  };
  const db = new Pool({ connectionString: config.databaseUrl, max: 3 });
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
