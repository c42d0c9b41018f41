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
 * UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE until their metadata has spread). Gives up at once
 * on an error that waiting cannot mend (not authorized to describe the topics, say), and when the deadline
 * passes — also in the middle of a metadata request, which kafkajs itself may retry for many seconds.
 */
export async function waitForLeaders(admin: Pick<Admin, 'fetchTopicMetadata'>, names: string[], timeoutMs = LEADERS_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const timedOut = (problem: string) => new Error(`created topics did not get leaders within ${timeoutMs / 1000} s: ${problem}`);
  let lastProblem = 'no answer yet';
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    try {
      const { topics } = await beforeDeadline(admin.fetchTopicMetadata({ topics: names }), deadline, () => timedOut(lastProblem));
      const leaderless = names.filter((name) => {
        // Every partition the topic has (another process may have created it first, with other settings:
        // existing topics are left as they are).
        const partitions = topics.find((topic) => topic.name === name)?.partitions ?? [];
        return partitions.length === 0 || partitions.some((partition) => partition.leader < 0);
      });
      if (leaderless.length === 0) return;
      lastProblem = `no leader yet for partitions of ${leaderless.join(', ')}`;
    } catch (error) {
      if (Date.now() >= deadline || !worthWaiting(error)) throw error;
      lastProblem = (error as Error).message;
    }
    if (Date.now() + delayMs > deadline) throw timedOut(lastProblem);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/**
 * Whether an error of a metadata request may pass by waiting: kafkajs marks what it does not retry
 * (authorization, an invalid topic name, ...) `retriable: false`, and gives up on what it does retry with
 * `KafkaJSNumberOfRetriesExceeded` (itself not retriable, but about an error that was).
 */
function worthWaiting(error: unknown): boolean {
  const kafkaError = error as { name?: string; retriable?: boolean };
  return kafkaError.name === 'KafkaJSNumberOfRetriesExceeded' || kafkaError.retriable !== false;
}

/** The promise's outcome, or `onTimeout()`'s error once the deadline has passed. */
async function beforeDeadline<T>(promise: Promise<T>, deadline: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), Math.max(0, deadline - Date.now()));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
