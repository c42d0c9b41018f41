import { KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { waitForLeaders } from './topic-admin';

type Metadata = { topics: { name: string; partitions: { partitionId: number; leader: number }[] }[] };

/** An admin whose metadata answers are scripted, one per call (the last one repeats). */
function scriptedAdmin(...answers: (Metadata | Error | 'hang')[]) {
  let calls = 0;
  const fetchTopicMetadata = jest.fn(() => {
    const answer = answers[Math.min(calls++, answers.length - 1)];
    if (answer === 'hang') return new Promise<never>(() => undefined);
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  });
  return { fetchTopicMetadata } as unknown as Parameters<typeof waitForLeaders>[0] & { fetchTopicMetadata: jest.Mock };
}

const led = (leader: number): Metadata => ({ topics: [{ name: 't', partitions: [{ partitionId: 0, leader }, { partitionId: 1, leader: 1 }] }] });
// kafkajs's own errors, as its retrier hands them on.
const protocolError = (type: string, retriable: boolean) =>
  new KafkaJSProtocolError({ type, code: 0, retriable, message: `${type} from the broker` } as unknown as Error);

describe('waitForLeaders', () => {
  it('waits through the answers of a broker whose new topics are still spreading', async () => {
    const admin = scriptedAdmin(
      new KafkaJSNumberOfRetriesExceeded(protocolError('UNKNOWN_TOPIC_OR_PARTITION', true), { retryCount: 5, retryTime: 100 }),
      protocolError('LEADER_NOT_AVAILABLE', true),
      led(-1),
      led(1),
    );
    await waitForLeaders(admin, ['t'], 10_000);
    expect(admin.fetchTopicMetadata).toHaveBeenCalledTimes(4);
  });

  it('gives up at once on an error waiting cannot mend, with that error', async () => {
    const denied = new KafkaJSNonRetriableError(protocolError('TOPIC_AUTHORIZATION_FAILED', false));
    const admin = scriptedAdmin(denied, led(1));
    await expect(waitForLeaders(admin, ['t'], 10_000)).rejects.toBe(denied);
    expect(admin.fetchTopicMetadata).toHaveBeenCalledTimes(1);
  });

  it('keeps its deadline while a metadata request hangs', async () => {
    const admin = scriptedAdmin(led(-1), 'hang');
    await expect(waitForLeaders(admin, ['t'], 300)).rejects.toThrow(
      'created topics did not get leaders within 0.3 s: no leader yet for partitions of t',
    );
    expect(admin.fetchTopicMetadata).toHaveBeenCalledTimes(2);
  });
});
