import { ACCESS_ACKNOWLEDGED, AccessAcknowledgedV1Schema, encodeMessage, envelopeHeader, Topics } from '@portcullis/contracts';
import { createKafka } from '@portcullis/kafka';
import { rejectionOf } from '@test/support/rejection';
import { kafkaAs, readTestEnv, type TestEnvironment } from '@test/support/test-env';
import {
  AclOperationTypes,
  AclPermissionTypes,
  AclResourceTypes,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
  logLevel,
  ResourcePatternTypes,
  type Admin,
  type Consumer,
  type Kafka,
  type Producer,
} from 'kafkajs';
import { randomBytes, randomUUID } from 'node:crypto';
import { aclKey } from '../../deploy/kafka/acls';

/**
 * Kafka is authenticated (SASL/SCRAM-SHA-512) and authorised (ACLs, deploy/kafka/acls.ts): each service
 * can do exactly its part. Above all, an adapter's credentials cannot publish decisions.
 *
 * The clients here connect like the services do, through the SASL listener with the run's users. The
 * loopback tooling listener (`env.kafka.brokers`, a super user) only observes: end offsets and ACLs.
 * Records written here use keys of systems no adapter serves, so later specs' adapters skip them.
 */
describe('Kafka authentication and ACLs', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const tooling = createKafka({ brokers: env.kafka.brokers, clientId: `kafka-acl-spec-tooling-${suffix}` });
  let toolingAdmin: Admin;
  const open: { disconnect(): Promise<void> }[] = [];

  /** A client through the SASL listener as one of the run's users (quiet: several calls fail on purpose). */
  function kafkaAsUser(user: 'policyService' | 'adapter' | 'admin', password?: string): Kafka {
    const connection = kafkaAs(env, user);
    if (password !== undefined) connection.sasl.password = password;
    return createKafka(
      { ...connection, clientId: `kafka-acl-spec-${user}-${suffix}` },
      { logLevel: logLevel.NOTHING, retry: { retries: 1, initialRetryTime: 100 } },
    );
  }

  /** Like the services' ReliableProducer: idempotent, acks=all. */
  async function producerOf(kafka: Kafka): Promise<Producer> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    open.push(producer);
    await producer.connect();
    return producer;
  }

  /** Sum of the topic's end offsets, read through the tooling listener. */
  async function endOffset(topic: string): Promise<bigint> {
    const offsets = await toolingAdmin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, partition) => sum + BigInt(partition.high), 0n);
  }

  function acknowledgement(systemId: string): string {
    return encodeMessage(AccessAcknowledgedV1Schema, {
      ...envelopeHeader('kafka-acl-spec'),
      type: ACCESS_ACKNOWLEDGED,
      version: 1,
      commandId: randomUUID(),
      generation: 1,
      data: {
        adapterId: `kafka-acl-${suffix}`,
        systemId,
        desiredState: 'revoked',
        status: 'delivered',
        detail: 'kafka-acl spec: written with the adapter credentials',
      },
    });
  }

  beforeAll(async () => {
    toolingAdmin = tooling.admin();
    await toolingAdmin.connect();
  });

  afterAll(async () => {
    for (const client of open.reverse()) await client.disconnect().catch(() => undefined);
    await toolingAdmin?.disconnect();
  });

  it("an adapter's credentials consume the decisions and produce an acknowledgement", async () => {
    const systemId = `kafka-acl-consumed-${suffix}`;
    // A decision to find on the topic (written through the tooling listener: this test is about the
    // adapter's side).
    const setup = tooling.producer({ allowAutoTopicCreation: false });
    open.push(setup);
    await setup.connect();
    await setup.send({ topic: Topics.systemAccess, acks: -1, messages: [{ key: systemId, value: JSON.stringify({ spec: 'kafka-acl' }) }] });

    // The adapter kit's group id format: `portcullis-adapter.<adapterId>` (libs/adapter-kit start-adapter.ts).
    const consumer: Consumer = kafkaAsUser('adapter').consumer({
      groupId: `portcullis-adapter.kafka-acl-${suffix}`,
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
    });
    open.push(consumer);
    const crashes: unknown[] = [];
    consumer.on(consumer.events.CRASH, (event) => crashes.push(event.payload.error));
    let seen = false;
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        if (message.key?.toString('utf8') === systemId) seen = true;
      },
    });
    const deadline = Date.now() + 30_000;
    while (!seen && crashes.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(crashes).toEqual([]);
    expect(seen).toBe(true);
    await consumer.disconnect();

    const before = await endOffset(Topics.acknowledgements);
    const producer = await producerOf(kafkaAsUser('adapter'));
    await producer.send({ topic: Topics.acknowledgements, acks: -1, messages: [{ key: systemId, value: acknowledgement(systemId) }] });
    expect(await endOffset(Topics.acknowledgements)).toBe(before + 1n);
  });

  it("producing to the decisions topic with an adapter's credentials is refused, and nothing is appended", async () => {
    const systemId = `kafka-acl-forged-${suffix}`;
    const before = await endOffset(Topics.systemAccess);
    // The producer itself connects and initialises (the adapter may WRITE other topics) ...
    const producer = await producerOf(kafkaAsUser('adapter'));
    // ... but a forged decision is refused by the broker.
    const error = await rejectionOf(
      producer.send({
        topic: Topics.systemAccess,
        acks: -1,
        messages: [{ key: systemId, value: JSON.stringify({ type: 'system-access.changed', forged: true }) }],
      }),
    );
    expect(error).toBeInstanceOf(KafkaJSProtocolError);
    expect(error).toMatchObject({ type: 'TOPIC_AUTHORIZATION_FAILED', code: 29, retriable: false });
    expect(await endOffset(Topics.systemAccess)).toBe(before);
  });

  it("the policy service's credentials cannot forge an adapter's acknowledgement", async () => {
    const before = await endOffset(Topics.acknowledgements);
    const producer = await producerOf(kafkaAsUser('policyService'));
    const systemId = `kafka-acl-forged-ack-${suffix}`;
    const error = await rejectionOf(
      producer.send({ topic: Topics.acknowledgements, acks: -1, messages: [{ key: systemId, value: acknowledgement(systemId) }] }),
    );
    expect(error).toMatchObject({ type: 'TOPIC_AUTHORIZATION_FAILED', code: 29 });
    expect(await endOffset(Topics.acknowledgements)).toBe(before);
  });

  it("an adapter's credentials cannot use a consumer group outside portcullis-adapter.*", async () => {
    // kafkajs reports a refused FindCoordinator as KafkaJSGroupCoordinatorNotFound and keeps the
    // broker's GROUP_AUTHORIZATION_FAILED only in its debug log: capture that log to see the cause.
    const logged: string[] = [];
    const kafka = createKafka(
      { ...kafkaAs(env, 'adapter'), clientId: `kafka-acl-spec-group-${suffix}` },
      {
        logLevel: logLevel.DEBUG,
        retry: { retries: 0 },
        logCreator: () => (entry) => {
          const error = (entry.log as { error?: { type?: string; message?: string } }).error;
          if (error) logged.push(`${error.type ?? ''} ${error.message ?? ''}`);
        },
      },
    );
    const consumer = kafka.consumer({ groupId: `policy-service-test-kafka-acl-${suffix}`, maxWaitTimeInMs: 500, retry: { retries: 0 } });
    open.push(consumer);
    const outcome = new Promise<unknown>((resolve) => {
      consumer.on(consumer.events.CRASH, (event) => resolve(event.payload.error));
      consumer.on(consumer.events.GROUP_JOIN, () => resolve(new Error('the consumer joined the group')));
    });
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({ autoCommit: false, eachMessage: async () => undefined });
    // The timer is cleared: left running, it kept Jest alive for up to 20 s after the last spec.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(new Error('no outcome in 20 s')), 20_000)));
    const error = await Promise.race([outcome, timeout]).finally(() => clearTimeout(timer));
    expect(error).toMatchObject({ name: 'KafkaJSGroupCoordinatorNotFound' });
    expect(logged.some((line) => line.startsWith('GROUP_AUTHORIZATION_FAILED'))).toBe(true);
  });

  it('a wrong password, or an unknown user, fails authentication', async () => {
    for (const kafka of [
      kafkaAsUser('adapter', `${env.kafka.sasl.adapter.password}x`),
      kafkaAsUser('policyService', 'not-the-password'),
      createKafka(
        {
          brokers: env.kafka.sasl.brokers,
          clientId: `kafka-acl-spec-nobody-${suffix}`,
          sasl: { mechanism: env.kafka.sasl.mechanism, username: `nobody-${suffix}`, password: env.kafka.sasl.adapter.password },
        },
        { logLevel: logLevel.NOTHING, retry: { retries: 0 } },
      ),
    ]) {
      const producer = kafka.producer();
      open.push(producer);
      const error = await rejectionOf(producer.connect());
      expect(error).toBeInstanceOf(KafkaJSSASLAuthenticationError);
      expect(error.message).toMatch(/SCRAM SHA512 authentication failed/);
    }
  });

  it('the SASL listener refuses a client that does not authenticate', async () => {
    const anonymous = createKafka(
      { brokers: env.kafka.sasl.brokers, clientId: `kafka-acl-spec-anonymous-${suffix}` },
      { logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 2_000, requestTimeout: 3_000 },
    ).admin();
    open.push(anonymous);
    // The broker closes a connection that sends anything but ApiVersions/SaslHandshake before authenticating.
    const error = await rejectionOf(anonymous.connect().then(() => anonymous.listTopics()));
    expect(error.name).toBe('KafkaJSConnectionClosedError');
  });

  it("the policy service's credentials can publish a decision", async () => {
    const systemId = `kafka-acl-decision-${suffix}`;
    const before = await endOffset(Topics.systemAccess);
    const producer = await producerOf(kafkaAsUser('policyService'));
    await producer.send({ topic: Topics.systemAccess, acks: -1, messages: [{ key: systemId, value: JSON.stringify({ spec: 'kafka-acl' }) }] });
    expect(await endOffset(Topics.systemAccess)).toBe(before + 1n);
  });

  it('the ACLs are exactly the table in deploy/kafka/acls.ts', async () => {
    const described = await toolingAdmin.describeAcls({
      resourceType: AclResourceTypes.ANY,
      resourcePatternType: ResourcePatternTypes.ANY,
      operation: AclOperationTypes.ANY,
      permissionType: AclPermissionTypes.ANY,
    });
    const actual = described.resources
      .flatMap((resource) => resource.acls.map((acl) => aclKey({ ...resource, ...acl })))
      .sort();
    expect(actual).toEqual(expectedAcls(env).sort());
  });
});

/** Written out by hand (not computed by deploy/kafka/acls.ts), so that a change there shows here. */
function expectedAcls(env: TestEnvironment): string[] {
  const policy = `User:${env.kafka.sasl.policyService.username} *`;
  const adapter = `User:${env.kafka.sasl.adapter.username} *`;
  return [
    `${policy} ALLOW WRITE TOPIC LITERAL portcullis.system-access.v1`,
    `${policy} ALLOW READ TOPIC LITERAL portcullis.system-access.v1`,
    `${policy} ALLOW DESCRIBE TOPIC LITERAL portcullis.system-access.v1`,
    `${policy} ALLOW READ TOPIC LITERAL portcullis.acknowledgements.v1`,
    `${policy} ALLOW READ TOPIC LITERAL portcullis.adapter-heartbeats.v1`,
    `${policy} ALLOW WRITE TOPIC LITERAL portcullis.dead-letters.v1`,
    `${policy} ALLOW READ GROUP PREFIXED portcullis-policy-service`,
    `${policy} ALLOW READ GROUP PREFIXED policy-service-test-`,
    `${adapter} ALLOW READ TOPIC LITERAL portcullis.system-access.v1`,
    `${adapter} ALLOW WRITE TOPIC LITERAL portcullis.acknowledgements.v1`,
    `${adapter} ALLOW WRITE TOPIC LITERAL portcullis.adapter-heartbeats.v1`,
    `${adapter} ALLOW WRITE TOPIC LITERAL portcullis.dead-letters.v1`,
    `${adapter} ALLOW READ GROUP PREFIXED portcullis-adapter.`,
  ];
}
