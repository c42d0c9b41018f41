import { readFileSync } from 'node:fs';
import { kafkaConnectionFromEnv, type KafkaConnectionConfig } from '@portcullis/kafka';
import type { z } from 'zod';
import { describeError } from '../logging/describe-error';
import { AdapterConfigError } from './adapter-config.error';
import { parseAdapterConfig, type AdapterConfig } from './adapter-config';

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readJson(source: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new AdapterConfigError([`${source} is not valid JSON: ${describeError(error)}`]);
  }
}

function readConfigFile(file: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new AdapterConfigError([`ADAPTER_CONFIG: cannot read ${file}: ${describeError(error)}`]);
  }
  const json = readJson(`ADAPTER_CONFIG (${file})`, text);
  if (!isObject(json)) throw new AdapterConfigError([`ADAPTER_CONFIG (${file}) must hold a JSON object`]);
  return json;
}

function integerFromEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new AdapterConfigError([`${name} must be an integer, not "${raw}"`]);
  return value;
}

function withoutUndefined(object: JsonObject): JsonObject {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

/**
 * TLS from the environment over the file's `kafka.ssl`: `KAFKA_SSL_CA` replaces it; `KAFKA_SSL=true` switches
 * TLS on but keeps a CA the file names (it must not widen trust to the system's CAs); `KAFKA_SSL=false`
 * switches it off, and is refused against a file that names a CA (one of the two is a mistake).
 */
function sslFromEnv(connection: KafkaConnectionConfig, fileSsl: unknown): unknown {
  const fileNamesCa = isObject(fileSsl);
  if (connection.ssl === true) return fileNamesCa ? fileSsl : true;
  if (connection.ssl === false && fileNamesCa) {
    throw new AdapterConfigError(['KAFKA_SSL=false, but kafka.ssl.ca in ADAPTER_CONFIG names a CA: drop one of the two']);
  }
  return connection.ssl; // KAFKA_SSL_CA's CA, false, or nothing from the environment
}

function kafkaFromEnv(env: NodeJS.ProcessEnv, fromFile: unknown): unknown {
  let connection;
  try {
    connection = kafkaConnectionFromEnv(env, '');
  } catch (error) {
    throw new AdapterConfigError([describeError(error)]);
  }
  const overrides = withoutUndefined({
    brokers: env.KAFKA_BROKERS ? connection.brokers : undefined,
    clientId: env.KAFKA_CLIENT_ID || undefined,
    sasl: connection.sasl,
    ssl: sslFromEnv(connection, isObject(fromFile) ? fromFile.ssl : undefined),
  });
  if (Object.keys(overrides).length === 0) return fromFile;
  return { ...(isObject(fromFile) ? fromFile : {}), ...overrides };
}

/**
 * Merges the JSON file named by `ADAPTER_CONFIG` (if any) with the environment, which wins:
 * `ADAPTER_ID`, `ADAPTER_KIND`, `ADAPTER_STATE_DIR`, `ADAPTER_HEARTBEAT_INTERVAL_MS`,
 * `ADAPTER_VERIFY_INTERVAL_MS`, `ADAPTER_DELIVERED_ACK_DELAY_MS`, `ADAPTER_RETRY_INITIAL_MS`, `ADAPTER_RETRY_MAX_MS`, `ADAPTER_SYSTEMS` (JSON object of systems),
 * `ADAPTER_SIGNING_KEY_ID` and `ADAPTER_SIGNING_KEY` (PEM text or path), `ADAPTER_TRUSTED_KEYS` (JSON object:
 * key id → the policy service's public key, PEM text or path),
 * `PORT`, `LOG_LEVEL` and the `KAFKA_*` variables of `kafkaConnectionFromEnv`.
 */
export function readAdapterConfigInput(env: NodeJS.ProcessEnv): JsonObject {
  const file = env.ADAPTER_CONFIG ? readConfigFile(env.ADAPTER_CONFIG) : {};
  const retry = withoutUndefined({
    initialMs: integerFromEnv(env, 'ADAPTER_RETRY_INITIAL_MS'),
    maxMs: integerFromEnv(env, 'ADAPTER_RETRY_MAX_MS'),
  });
  const overrides = withoutUndefined({
    adapterId: env.ADAPTER_ID || undefined,
    kind: env.ADAPTER_KIND || undefined,
    stateDir: env.ADAPTER_STATE_DIR || undefined,
    heartbeatIntervalMs: integerFromEnv(env, 'ADAPTER_HEARTBEAT_INTERVAL_MS'),
    verifyIntervalMs: integerFromEnv(env, 'ADAPTER_VERIFY_INTERVAL_MS'),
    deliveredAckDelayMs: integerFromEnv(env, 'ADAPTER_DELIVERED_ACK_DELAY_MS'),
    retry: Object.keys(retry).length > 0 ? { ...(isObject(file.retry) ? file.retry : {}), ...retry } : undefined,
    kafka: kafkaFromEnv(env, file.kafka),
    httpPort: integerFromEnv(env, 'PORT'),
    logLevel: env.LOG_LEVEL || undefined,
    systems: env.ADAPTER_SYSTEMS ? readJson('ADAPTER_SYSTEMS', env.ADAPTER_SYSTEMS) : undefined,
    signingKey:
      env.ADAPTER_SIGNING_KEY || env.ADAPTER_SIGNING_KEY_ID
        ? {
            ...(isObject(file.signingKey) ? file.signingKey : {}),
            ...withoutUndefined({ keyId: env.ADAPTER_SIGNING_KEY_ID || undefined, privateKey: env.ADAPTER_SIGNING_KEY || undefined }),
          }
        : undefined,
    trustedKeys: env.ADAPTER_TRUSTED_KEYS ? readJson('ADAPTER_TRUSTED_KEYS', env.ADAPTER_TRUSTED_KEYS) : undefined,
  });
  return { ...file, ...overrides };
}

/** Reads and validates the adapter's configuration from `ADAPTER_CONFIG` and the environment. */
export function loadAdapterConfig<TSystem, TSystemInput>(
  env: NodeJS.ProcessEnv,
  systemConfigSchema: z.ZodType<TSystem, TSystemInput>,
): AdapterConfig<TSystem> {
  return parseAdapterConfig(readAdapterConfigInput(env), systemConfigSchema);
}
