import type { Admin, Kafka } from 'kafkajs';

const LEADERS_TIMEOUT_MS = 60_000;

/** A topic to create: Portcullis' own (`TopicSpec`) or any other, such as the benchmark's or a warm-up's. */
export interface NewTopic {
  topic: string;
  numPartitions: number;
  configEntries?: { name: string; value: string }[];
}

/**
 * Creates the topics that do not exist yet, with their settings, and returns once every partition of
 * them has a leader. Existing topics are left as they are.
 */
export async function ensureTopics(kafka: Kafka, specs: NewTopic[]): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(spec.topic));
    if (missing.length > 0) {
      // Not kafkajs's `waitForLeaders`: it retries only LEADER_NOT_AVAILABLE, and a broker that has just
      // created many partitions answers UNKNOWN_TOPIC_OR_PARTITION for a while too.
      await admin.createTopics({
        waitForLeaders: false,
        topics: missing.map((spec) => ({
          topic: spec.topic,
          numPartitions: spec.numPartitions,
          replicationFactor: -1,
          configEntries: spec.configEntries,
        })),
      });
      await waitForLeaders(admin, missing.map((spec) => spec.topic));
    }
    return missing.map((spec) => spec.topic);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Waits until every partition of the topics has a leader (topics just created: a broker answers
 * UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE until their metadata has spread).
 */
async function waitForLeaders(admin: Admin, names: string[]): Promise<void> {
  const deadline = Date.now() + LEADERS_TIMEOUT_MS;
  let lastProblem = '';
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: names });
      const leaderless = names.filter((name) => {
        // Every partition the topic has (another process may have created it first, with other settings:
        // existing topics are left as they are).
        const partitions = topics.find((topic) => topic.name === name)?.partitions ?? [];
        return partitions.length === 0 || partitions.some((partition) => partition.leader < 0);
      });
      if (leaderless.length === 0) return;
      lastProblem = `no leader yet for partitions of ${leaderless.join(', ')}`;
    } catch (error) {
      lastProblem = (error as Error).message;
    }
    if (Date.now() + delayMs > deadline) {
      throw new Error(`created topics did not get leaders within ${LEADERS_TIMEOUT_MS / 1000} s: ${lastProblem}`);
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}
