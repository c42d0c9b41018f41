import { CoalescingSender, KafkaBaselineCentre } from './kafka-baseline';

type Waiter = { resolve: (at: number) => void };
type Send = (request: { messages: { value: string }[] }) => Promise<unknown>;

/**
 * A centre whose producer is `send` (no broker: the Kafka client is never connected), and a way to deliver
 * replies as its consumer would: `reply(sampleId)` completes a round that waits for one reply.
 */
function centreWith(send: Send) {
  const centre = new KafkaBaselineCentre({ brokers: ['127.0.0.1:1'] }, 'requests', 'replies', 'group');
  const internals = centre as unknown as { producer: { send: Send }; waiting: Map<string, Waiter> };
  internals.producer = { send };
  const reply = (sampleId: string) => internals.waiting.get(sampleId)?.resolve(performance.timeOrigin + performance.now());
  const sampleOf = (request: { messages: { value: string }[] }) => (JSON.parse(request.messages[0].value) as { sampleId: string }).sampleId;
  return { centre, waiting: internals.waiting, reply, sampleOf };
}

const never = () => new Promise<never>(() => undefined);

// Jest fails a test in which a promise rejection goes unhandled: the "not an unhandled rejection" cases
// fail that way (they did on the first version of these rounds, which awaited the send before the replies).
describe('KafkaBaselineCentre rounds', () => {
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

  it('takes the time from the send to the last reply, also when the reply comes before the send is acknowledged', async () => {
    let acknowledge!: () => void;
    const { centre, waiting, reply, sampleOf } = centreWith((request) => {
      reply(sampleOf(request));
      return new Promise<void>((resolve) => (acknowledge = resolve));
    });
    const round = centre.round(1, 1_000);
    await settle();
    acknowledge();
    await expect(round).resolves.toBeGreaterThanOrEqual(0);
    expect(waiting.size).toBe(0);
  });

  it('times out while the send is still under way, and the send failing later is not an unhandled rejection', async () => {
    let fail!: (error: Error) => void;
    const { centre, waiting } = centreWith(() => new Promise((_, reject) => (fail = reject)));
    await expect(centre.round(1, 30)).rejects.toThrow(/not all 1 replies within 30 ms/);
    expect(waiting.size).toBe(0);
    fail(new Error('broker gone'));
    await settle();
  });

  it('is bounded by the timeout when every reply has come but the send never settles', async () => {
    const { centre, reply, sampleOf } = centreWith((request) => {
      reply(sampleOf(request));
      return never();
    });
    await expect(centre.round(1, 30)).rejects.toThrow(/within 30 ms/);
  });

  it('fails when the send fails, leaving no waiter, and the timeout later is not an unhandled rejection', async () => {
    const { centre, waiting } = centreWith(() => Promise.reject(new Error('not authorized')));
    await expect(centre.round(3, 30)).rejects.toThrow('not authorized');
    expect(waiting.size).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 60)); // past the timeout
  });

  it('sends a bulk round in batches, each request to the partition of the consumer it is for', async () => {
    const sent: { messages: { key: string; partition: number; value: string }[] }[] = [];
    const { centre } = centreWith(async (request) => {
      sent.push(request as (typeof sent)[number]);
    });
    const items = Array.from({ length: 5 }, (_, index) => ({ item: `s${index}`, consumer: `a${index % 2}` }));
    await expect(centre.bulkRound(items, 6, 30, 2)).rejects.toThrow(/not all 5 replies/);
    expect(sent.map((request) => request.messages.length)).toEqual([2, 2, 1]);
    const all = sent.flatMap((request) => request.messages);
    expect(all.map((message) => message.key)).toEqual(['a0', 'a1', 'a0', 'a1', 'a0']);
    const partitionOf = new Map(all.map((message) => [message.key, message.partition]));
    expect(all.every((message) => message.partition === partitionOf.get(message.key))).toBe(true);
  });
});

describe('CoalescingSender', () => {
  it('sends a message alone at once, and what comes while a request is under way together in the next', async () => {
    const requests: { keys: string[]; finish: () => void; fail: (error: Error) => void }[] = [];
    const sender = new CoalescingSender(
      (messages) =>
        new Promise<void>((resolve, reject) => requests.push({ keys: messages.map((message) => String(message.key)), finish: resolve, fail: reject })),
    );
    const first = sender.send({ key: 'a', value: '' });
    expect(requests.map((request) => request.keys)).toEqual([['a']]);
    const second = sender.send({ key: 'b', value: '' });
    const third = sender.send({ key: 'c', value: '' });
    expect(requests).toHaveLength(1); // b and c wait for a's request
    requests[0].finish();
    await first;
    await Promise.resolve();
    expect(requests.map((request) => request.keys)).toEqual([['a'], ['b', 'c']]);
    const fourth = sender.send({ key: 'd', value: '' });
    requests[1].fail(new Error('broker gone'));
    await expect(second).rejects.toThrow('broker gone');
    await expect(third).rejects.toThrow('broker gone');
    await Promise.resolve();
    expect(requests.map((request) => request.keys)).toEqual([['a'], ['b', 'c'], ['d']]); // a failure fails its batch only
    requests[2].finish();
    await expect(fourth).resolves.toBeUndefined();
    const fifth = sender.send({ key: 'e', value: '' });
    expect(requests).toHaveLength(4); // idle again: sent at once
    requests[3].finish();
    await fifth;
  });
});
