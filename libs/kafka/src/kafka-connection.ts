import { Kafka, logLevel, type KafkaConfig, type SASLOptions } from 'kafkajs';

/** How a service reaches the Kafka cluster. Read from the environment by each app's config. */
export interface KafkaConnectionConfig {
  brokers: string[];
  clientId: string;
  sasl?: { mechanism: 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  ssl?: boolean;
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
  if (env.KAFKA_SSL === 'true') config.ssl = true;
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
    ssl: connection.ssl,
    logLevel: logLevel.ERROR,
    retry: { initialRetryTime: 200, retries: 8, maxRetryTime: 5_000 },
    ...overrides,
  });
}
