import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { ensureTopics } from '../../libs/kafka/src/topic-admin';

/**
 * A fresh broker creates its group-coordinator topic (__consumer_offsets) on the first group join and
 * loads the producer-id state on the first idempotent producer. Until then clients get retriable
 * "coordinator not available/loading" errors, which kafkajs logs loudly. Doing both once, right after
 * start, keeps those out of every service's and test's logs.
 */
export async function warmUpKafka(brokers: string[]): Promise<void> {
  const kafka = new Kafka({ clientId: 'portcullis-warm-up', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const topic = `portcullis-warm-up-${randomUUID()}`;
  try {
    await ensureTopics(kafka, [{ topic, numPartitions: 1 }]);
    const consumer = kafka.consumer({ groupId: topic, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    await consumer.run({ eachMessage: async () => undefined });
    await joined;
    await consumer.disconnect();
    await admin.deleteTopics({ topics: [topic] });
  } finally {
    await admin.disconnect();
  }
}
