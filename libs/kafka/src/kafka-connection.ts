import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type KafkaConfig, type SASLOptions } from 'kafkajs';

/** How a service reaches the Kafka cluster. Read from the environment by each app's config. */
export interface KafkaConnectionConfig {
  brokers: string[];
  clientId: string;
  sasl?: { mechanism: 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  /**
   * TLS: `true` trusts the system's CAs; `{ ca }` trusts only the CA certificates in that PEM text (a
   * private CA, as clusters usually have). The broker's certificate must name the host connected to.
   */
  ssl?: boolean | { ca: string };
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The CA certificates a TLS connection trusts, given as PEM text or as the path of a PEM file. Refuses
 * anything without a readable certificate, so a mistyped path or a key file fails at start, not at the
 * first connection.
 */
export function trustedCaCertificates(pemOrPath: string, what = 'the CA certificate'): string {
  const trimmed = pemOrPath.trim();
  let text: string;
  try {
    text = trimmed.includes('-----BEGIN') ? trimmed : readFileSync(trimmed, 'utf8');
  } catch (error) {
    const shown = trimmed.length > 200 ? `${trimmed.slice(0, 200)}…` : trimmed;
    throw new Error(`${what}: cannot read ${shown} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const certificates = text.match(CERTIFICATE) ?? [];
  if (certificates.length === 0) throw new Error(`${what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  for (const pem of certificates) {
    try {
      new X509Certificate(pem);
    } catch (error) {
      throw new Error(`${what} holds a certificate that does not parse: ${(error as Error).message}`);
    }
  }
  return certificates.join('\n');
}

export function kafkaConnectionFromEnv(env: NodeJS.ProcessEnv, clientId: string): KafkaConnectionConfig {
  const brokers = (env.KAFKA_BROKERS ?? '127.0.0.1:9092')
    .split(',')
    .map((broker) => broker.trim())
    .filter(Boolean);
  const config: KafkaConnectionConfig = { brokers, clientId: env.KAFKA_CLIENT_ID ?? clientId };
  if (env.KAFKA_SASL_USERNAME) {
    const mechanism = (env.KAFKA_SASL_MECHANISM ?? 'scram-sha-256').toLowerCase();
    if (mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new Error(`KAFKA_SASL_MECHANISM must be scram-sha-256 or scram-sha-512, not "${mechanism}"`);
    }
    config.sasl = { mechanism, username: env.KAFKA_SASL_USERNAME, password: env.KAFKA_SASL_PASSWORD ?? '' };
  }
  const ssl = env.KAFKA_SSL?.trim().toLowerCase();
  if (ssl !== undefined && ssl !== '' && ssl !== 'true' && ssl !== 'false') throw new Error(`KAFKA_SSL must be true or false, not "${env.KAFKA_SSL}"`);
  if (env.KAFKA_SSL_CA?.trim()) {
    if (ssl === 'false') throw new Error('KAFKA_SSL_CA is set but KAFKA_SSL is false: a CA is only used with TLS');
    config.ssl = { ca: trustedCaCertificates(env.KAFKA_SSL_CA, 'KAFKA_SSL_CA') };
  } else if (ssl === 'true' || ssl === 'false') {
    config.ssl = ssl === 'true'; // an explicit false is kept: it overrides a setting from elsewhere (an adapter's file)
  }
  return config;
}

/**
 * The one place that constructs a kafkajs client. Services never call `new Kafka` themselves, which
 * keeps the client library swappable (e.g. for @confluentinc/kafka-javascript's KafkaJS-compatible API).
 */
export function createKafka(connection: KafkaConnectionConfig, overrides: Partial<KafkaConfig> = {}): Kafka {
  return new Kafka({
    clientId: connection.clientId,
    brokers: connection.brokers,
    sasl: connection.sasl as SASLOptions | undefined,
    ssl: typeof connection.ssl === 'object' ? { ca: [connection.ssl.ca], rejectUnauthorized: true } : connection.ssl,
    logLevel: logLevel.ERROR,
    retry: { initialRetryTime: 200, retries: 8, maxRetryTime: 5_000 },
    ...overrides,
  });
}
