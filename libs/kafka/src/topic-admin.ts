import type { Kafka } from 'kafkajs';
import type { TopicSpec } from './topic-specs';

/** Creates the topics that do not exist yet, with their settings. Existing topics are left as they are. */
export async function ensureTopics(kafka: Kafka, specs: TopicSpec[]): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(spec.topic));
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((spec) => ({
          topic: spec.topic,
          numPartitions: spec.numPartitions,
          replicationFactor: -1,
          configEntries: spec.configEntries,
        })),
      });
    }
    return missing.map((spec) => spec.topic);
  } finally {
    await admin.disconnect();
  }
}
