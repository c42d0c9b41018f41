import { readTestEnv } from '@test/support/test-env';
import { Kafka, logLevel } from 'kafkajs';
import { randomBytes } from 'node:crypto';
import { ensureTopics } from '../src/topic-admin';

/**
 * ensureTopics returns only once every partition of the topics it created has a leader, so whoever
 * started the broker can produce to any partition right away; a second call leaves existing topics alone.
 */
describe('ensureTopics on a real broker', () => {
  const env = readTestEnv();
  const kafka = new Kafka({ clientId: 'topic-admin-spec', brokers: env.kafka.brokers, logLevel: logLevel.NOTHING });
  const suffix = randomBytes(3).toString('hex');
  const spec = (name: string, numPartitions: number) => ({
    topic: `topic-admin-${name}-${suffix}`,
    numPartitions,
    configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
  });
  const admin = kafka.admin();

  beforeAll(() => admin.connect());
  afterAll(() => admin.disconnect());

  it('creates many partitions at once, every one with a leader on return, with the settings given', async () => {
    const many = [spec('wide', 60), spec('second', 60), spec('third', 1)];
    expect(await ensureTopics(kafka, many)).toEqual(many.map((s) => s.topic));

    const { topics } = await admin.fetchTopicMetadata({ topics: many.map((s) => s.topic) });
    for (const s of many) {
      const partitions = topics.find((topic) => topic.name === s.topic)!.partitions;
      expect(partitions).toHaveLength(s.numPartitions);
      expect(partitions.every((partition) => partition.leader >= 0)).toBe(true);
    }
    const configs = await admin.describeConfigs({ resources: [{ type: 2, name: many[0].topic, configNames: ['cleanup.policy'] }], includeSynonyms: false });
    expect(configs.resources[0].configEntries[0].configValue).toBe('compact');

    // Every partition takes a write at once (acks=all).
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      await producer.send({
        topic: many[0].topic,
        acks: -1,
        messages: Array.from({ length: 60 }, (_, partition) => ({ partition, key: String(partition), value: 'x' })),
      });
    } finally {
      await producer.disconnect();
    }

    expect(await ensureTopics(kafka, [...many, spec('fourth', 1)])).toEqual([`topic-admin-fourth-${suffix}`]);
  });
});
