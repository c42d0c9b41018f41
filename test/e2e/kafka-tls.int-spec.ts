import { parseAdapterConfig } from '@portcullis/adapter-kit';
import { testAdapterKeySettings } from '@portcullis/adapter-kit/testing/test-signing-keys';
import { ACCESS_ACKNOWLEDGED, AccessAcknowledgedV1Schema, encodeMessage, envelopeHeader, Topics } from '@portcullis/contracts';
import { createKafka, kafkaConnectionFromEnv, type KafkaConnectionConfig } from '@portcullis/kafka';
import { TEST_CA_CERTIFICATE } from '@portcullis/kafka/testing/test-ca-certificate';
import { rejectionOf } from '@test/support/rejection';
import { readTestEnv } from '@test/support/test-env';
import { KafkaJSSASLAuthenticationError, logLevel, type Admin } from 'kafkajs';
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';

/**
 * Kafka over TLS (SASL_SSL): the services' own settings — the policy service's KAFKA_SSL_CA, an adapter's
 * `kafka.ssl.ca` — reach the run's broker through its TLS listener and trust the run's throwaway CA only;
 * a client that does not trust that CA is refused before it says anything, and the listener still wants
 * SCRAM. (`npm start` runs every service over TLS: test/e2e/local-stack.int-spec.ts.)
 */
describe('Kafka over TLS', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const tooling = createKafka({ brokers: env.kafka.brokers, clientId: `kafka-tls-spec-tooling-${suffix}` });
  let toolingAdmin: Admin;
  const open: { disconnect(): Promise<void> }[] = [];

  const policyService = (): KafkaConnectionConfig =>
    kafkaConnectionFromEnv(
      {
        KAFKA_BROKERS: env.kafka.tls.brokers.join(','),
        KAFKA_SASL_MECHANISM: env.kafka.sasl.mechanism,
        KAFKA_SASL_USERNAME: env.kafka.sasl.policyService.username,
        KAFKA_SASL_PASSWORD: env.kafka.sasl.policyService.password,
        KAFKA_SSL_CA: env.kafka.tls.caFile,
      },
      `kafka-tls-spec-policy-${suffix}`,
    );

  const adapter = (): KafkaConnectionConfig =>
    parseAdapterConfig(
      {
        adapterId: `kafka-tls-${suffix}`,
        stateDir: '/nonexistent',
        ...testAdapterKeySettings(),
        kafka: { brokers: env.kafka.tls.brokers, sasl: { mechanism: env.kafka.sasl.mechanism, ...env.kafka.sasl.adapter }, ssl: { ca: env.kafka.tls.caFile } },
        systems: { [`kafka-tls-${suffix}`]: {} },
      },
      z.object({}),
    ).kafka;

  const quiet = { logLevel: logLevel.NOTHING, retry: { retries: 0 } };

  beforeAll(async () => {
    toolingAdmin = tooling.admin();
    await toolingAdmin.connect();
  });

  afterAll(async () => {
    for (const client of open.reverse()) await client.disconnect().catch(() => undefined);
    await toolingAdmin?.disconnect();
  });

  it("an adapter's settings publish over TLS, and the policy service's settings read the cluster over TLS", async () => {
    const before = await toolingAdmin.fetchTopicOffsets(Topics.acknowledgements);
    const producer = createKafka(adapter(), { logLevel: logLevel.NOTHING }).producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    open.push(producer);
    await producer.connect();
    // A well-formed acknowledgement about a system nobody registered: the services of later specs skip it.
    const value = encodeMessage(AccessAcknowledgedV1Schema, {
      ...envelopeHeader('kafka-tls-spec'),
      type: ACCESS_ACKNOWLEDGED,
      version: 1,
      commandId: randomUUID(),
      generation: 1,
      data: { adapterId: `kafka-tls-${suffix}`, systemId: `kafka-tls-${suffix}`, desiredState: 'revoked', status: 'delivered', detail: 'kafka-tls spec' },
    });
    await producer.send({ topic: Topics.acknowledgements, acks: -1, messages: [{ key: `kafka-tls-${suffix}`, value }] });
    const after = await toolingAdmin.fetchTopicOffsets(Topics.acknowledgements);
    const total = (offsets: typeof before) => offsets.reduce((sum, partition) => sum + BigInt(partition.high), 0n);
    expect(total(after) - total(before)).toBe(1n);

    const admin = createKafka(policyService(), quiet).admin();
    open.push(admin);
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata({ topics: [Topics.systemAccess] });
    expect(metadata.topics.map((topic) => topic.name)).toEqual([Topics.systemAccess]);
  });

  it('refuses a client that does not trust the run’s CA, whatever its credentials', async () => {
    for (const ssl of [true, { ca: TEST_CA_CERTIFICATE }]) {
      const admin = createKafka({ ...policyService(), ssl }, quiet).admin();
      open.push(admin);
      const error = await rejectionOf(admin.connect());
      expect(error.message).toMatch(/self[- ]signed certificate|unable to verify|unable to get (local )?issuer certificate/i);
    }
  });

  it('checks the broker’s name against its certificate: the CA alone is not enough', async () => {
    const port = env.kafka.tls.brokers[0].split(':').pop();
    // 0.0.0.0 reaches the same listener on Linux, but the certificate names only 127.0.0.1 and localhost.
    const wrongName = createKafka({ ...policyService(), brokers: [`0.0.0.0:${port}`] }, quiet).admin();
    open.push(wrongName);
    expect((await rejectionOf(wrongName.connect())).message).toMatch(/Hostname\/IP does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/);
    const rightName = createKafka({ ...policyService(), brokers: [`localhost:${port}`] }, quiet).admin();
    open.push(rightName);
    await rightName.connect();
    expect((await rightName.fetchTopicMetadata({ topics: [Topics.systemAccess] })).topics).toHaveLength(1);
  });

  it('still authenticates on the TLS listener: a wrong password is refused', async () => {
    const connection = policyService();
    const admin = createKafka({ ...connection, sasl: { ...connection.sasl!, password: 'not-the-password' } }, quiet).admin();
    open.push(admin);
    expect(await rejectionOf(admin.connect())).toBeInstanceOf(KafkaJSSASLAuthenticationError);
  });
});

