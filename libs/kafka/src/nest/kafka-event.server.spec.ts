import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { KafkaEventServer } from './kafka-event.server';

/** Just enough of a kafkajs consumer to drive the transport's batches and watch its offset commits. */
class FakeConsumer {
  readonly events = { GROUP_JOIN: 'consumer.group_join' } as Consumer['events'];
  readonly commits: { topic: string; partition: number; offset: string }[][] = [];
  /** The next commit fails when this settles (the test settles it). */
  failNextCommit?: Promise<void>;
  eachBatch!: (payload: EachBatchPayload) => Promise<void>;
  private readonly listeners = new Map<string, ((event: unknown) => void)[]>();

  on(event: string, listener: (event: unknown) => void): () => void {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return () => undefined;
  }

  emit(event: string, payload: unknown): void {
    for (const listener of this.listeners.get(event) ?? []) listener({ payload });
  }

  async connect(): Promise<void> {}
  async subscribe(): Promise<void> {}
  async disconnect(): Promise<void> {}

  async run(options: { eachBatch: (payload: EachBatchPayload) => Promise<void> }): Promise<void> {
    this.eachBatch = options.eachBatch;
  }

  async commitOffsets(offsets: { topic: string; partition: number; offset: string }[]): Promise<void> {
    if (this.failNextCommit) {
      const failing = this.failNextCommit;
      this.failNextCommit = undefined;
      await failing;
      throw new Error('the group coordinator is loading');
    }
    this.commits.push(offsets);
  }

  /** Hands the transport a batch of one message at `offset`. */
  deliver(topic: string, partition: number, offset: string): Promise<void> {
    return this.eachBatch({
      batch: { topic, partition, messages: [{ offset, key: null, value: Buffer.from('{}'), timestamp: '0', attributes: 0, headers: {} }] },
      resolveOffset: () => undefined,
      heartbeat: async () => undefined,
      isRunning: () => true,
      isStale: () => false,
    } as unknown as EachBatchPayload);
  }
}

describe('KafkaEventServer offset commits', () => {
  let consumer: FakeConsumer;
  let server: KafkaEventServer;

  beforeEach(async () => {
    jest.useFakeTimers();
    consumer = new FakeConsumer();
    const producer = { connect: async () => undefined, disconnect: async () => undefined, sendBatch: async () => undefined };
    const kafka = { consumer: () => consumer, producer: () => producer } as unknown as Kafka;
    server = new KafkaEventServer({ kafka, groupId: 'spec' });
    server.addHandler('reports', async () => undefined, true);
    await new Promise<void>((resolve, reject) => void server.listen((error) => (error ? reject(error) : resolve())));
  });

  afterEach(async () => {
    await server.close();
    jest.useRealTimers();
  });

  /** Runs the background commit once (it runs every second). */
  const tick = () => jest.advanceTimersByTimeAsync(1_000);

  it('commits the next offset of every handled partition in the background', async () => {
    await consumer.deliver('reports', 0, '41');
    await consumer.deliver('reports', 1, '7');
    await tick();
    expect(consumer.commits).toEqual([
      [
        { topic: 'reports', partition: 0, offset: '42' },
        { topic: 'reports', partition: 1, offset: '8' },
      ],
    ]);
    await tick();
    expect(consumer.commits).toHaveLength(1); // nothing new handled: nothing to commit
  });

  it('commits offsets again after a failed commit, unless a newer one was handled meanwhile', async () => {
    await consumer.deliver('reports', 0, '41');
    await consumer.deliver('reports', 1, '7');
    let fail!: () => void;
    consumer.failNextCommit = new Promise((resolve) => (fail = resolve));
    await tick(); // the commit is in flight
    await consumer.deliver('reports', 1, '9'); // handled while it is
    fail();
    await jest.advanceTimersByTimeAsync(0);
    expect(consumer.commits).toEqual([]);

    await tick();
    expect(consumer.commits).toHaveLength(1);
    expect(consumer.commits[0]).toHaveLength(2);
    expect(consumer.commits[0]).toEqual(
      expect.arrayContaining([
        { topic: 'reports', partition: 0, offset: '42' },
        { topic: 'reports', partition: 1, offset: '10' },
      ]),
    );
  });

  it('forgets handled offsets of partitions a rebalance gave to another member', async () => {
    await consumer.deliver('reports', 0, '41');
    await consumer.deliver('reports', 1, '7');
    consumer.emit(consumer.events.GROUP_JOIN, { memberAssignment: { reports: [1] } });
    await tick();
    expect(consumer.commits).toEqual([[{ topic: 'reports', partition: 1, offset: '8' }]]);
  });

  it('runs one commit at a time: a slow commit is not overtaken by the next', async () => {
    await consumer.deliver('reports', 0, '41');
    let fail!: () => void;
    consumer.failNextCommit = new Promise((resolve) => (fail = resolve));
    await tick(); // commit of 42 in flight
    await consumer.deliver('reports', 0, '49');
    await tick(); // would commit 50 while 42 is still in flight: it waits instead
    await tick();
    expect(consumer.commits).toEqual([]);

    fail(); // 42 fails, and is not put back: 50 was handled meanwhile
    await jest.advanceTimersByTimeAsync(0);
    await tick();
    expect(consumer.commits).toEqual([[{ topic: 'reports', partition: 0, offset: '50' }]]);
  });

  it('does not put back offsets of partitions a rebalance moved away while their commit failed', async () => {
    await consumer.deliver('reports', 0, '41');
    await consumer.deliver('reports', 1, '7');
    let fail!: () => void;
    consumer.failNextCommit = new Promise((resolve) => (fail = resolve));
    await tick();
    consumer.emit(consumer.events.GROUP_JOIN, { memberAssignment: { reports: [1] } });
    fail();
    await jest.advanceTimersByTimeAsync(0);
    await tick();
    expect(consumer.commits).toEqual([[{ topic: 'reports', partition: 1, offset: '8' }]]);
  });
});
