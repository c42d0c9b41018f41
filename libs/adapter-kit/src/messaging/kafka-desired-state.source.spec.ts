import { Topics } from '@portcullis/contracts';
import type { EachBatchPayload, Kafka } from 'kafkajs';
import { JsonLogger } from '../logging/json.logger';
import type { DesiredStateRecord } from './desired-state.source';
import { KafkaDesiredStateSource } from './kafka-desired-state.source';

/** Just enough of kafkajs for the source: a consumer whose `eachBatch` the spec calls, and topic offsets. */
function fakeKafka(initial: { partition: number; low: string; high: string }[]) {
  let offsets = initial;
  let failFetches = 0;
  const listeners = new Map<string, (event: unknown) => void>();
  let eachBatch: ((payload: EachBatchPayload) => Promise<void>) | undefined;
  const consumer = {
    events: { GROUP_JOIN: 'join', CRASH: 'crash', DISCONNECT: 'disconnect' },
    on: (event: string, listener: (event: unknown) => void) => listeners.set(event, listener),
    connect: async () => undefined,
    subscribe: async () => undefined,
    run: async (config: { eachBatch: (payload: EachBatchPayload) => Promise<void> }) => {
      eachBatch = config.eachBatch;
    },
    disconnect: async () => undefined,
  };
  const admin = {
    connect: async () => undefined,
    disconnect: async () => undefined,
    fetchTopicOffsets: async () => {
      if (failFetches > 0) {
        failFetches -= 1;
        throw new Error('This server is not the leader for that topic-partition');
      }
      return offsets.map((entry) => ({ ...entry, offset: entry.high }));
    },
  };
  let consumersMade = 0;
  const kafka = {
    consumer: () => {
      consumersMade += 1;
      return consumer;
    },
    admin: () => admin,
  } as unknown as Kafka;
  const resolved: string[] = [];
  return {
    kafka,
    resolved,
    consumersMade: () => consumersMade,
    crash: (restart: boolean) => listeners.get('crash')!({ payload: { error: new Error('Failed to find group coordinator'), restart } }),
    /** The next `count` offset fetches fail. */
    failNextFetches: (count: number) => (failFetches = count),
    /** The partitions' bounds from now on (records written, say). */
    setOffsets: (next: { partition: number; low: string; high: string }[]) => (offsets = next),
    join: (partitions: number[]) => listeners.get('join')!({ payload: { memberAssignment: { [Topics.systemAccess]: partitions }, memberId: 'm' } }),
    batch: (partition: number, messages: { key: string | null; offset: string }[]) =>
      eachBatch!({
        batch: { partition, messages: messages.map((message) => ({ key: message.key === null ? null : Buffer.from(message.key), value: Buffer.from('{}'), offset: message.offset })) },
        resolveOffset: (offset: string) => resolved.push(offset),
        heartbeat: async () => undefined,
        isRunning: () => true,
        isStale: () => false,
      } as unknown as EachBatchPayload),
  };
}

const logger = new JsonLogger({ level: 'error', write: () => undefined });

describe('KafkaDesiredStateSource', () => {
  it('handles a record without a key after every record before it, and every record after it after it; none after a failure', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '100' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const order: string[] = [];
    let releaseSlow!: () => void;
    const slow = new Promise<void>((resolve) => (releaseSlow = resolve));
    await source.start(async (record: DesiredStateRecord) => {
      order.push(`start ${record.offset}`);
      if (record.offset === '15') await slow; // a record of the system the keyless one claims, still being handled
      if (record.offset === '30') throw new Error('could not store');
      order.push(`end ${record.offset}`);
    });
    const handling = kafka.batch(0, [
      { key: 'stock-db', offset: '15' },
      { key: 'ledger-db', offset: '16' },
      { key: null, offset: '20' },
      { key: 'stock-db', offset: '21' },
      { key: 'ledger-db', offset: '22' },
    ]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(order).toEqual(['start 15', 'start 16', 'end 16']); // the keyless record and everything after it wait
    releaseSlow();
    await handling;
    expect(order.slice(3)).toEqual(['end 15', 'start 20', 'end 20', 'start 21', 'end 21', 'start 22', 'end 22']);

    // An earlier record that failed: the keyless one is not handled, nor what follows it (the batch comes again).
    order.length = 0;
    await expect(kafka.batch(0, [{ key: 'stock-db', offset: '30' }, { key: null, offset: '31' }, { key: 'ledger-db', offset: '32' }])).rejects.toThrow(
      'could not store',
    );
    expect(order).toEqual(['start 30']);
    await source.stop();
  });

  it('signals caught-up once the records that were there at start are handled, and only once', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '10' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const caughtUp = jest.fn();
    const seen: DesiredStateRecord[] = [];
    await source.start(async (record) => void seen.push(record), () => true, caughtUp);
    kafka.join([0]);
    await kafka.batch(0, [{ key: 'a', offset: '3' }, { key: 'b', offset: '8' }]);
    expect(caughtUp).not.toHaveBeenCalled();
    // Offset 9 compacted away: a batch that goes past the end counts too.
    await kafka.batch(0, [{ key: 'a', offset: '10' }, { key: 'c', offset: '11' }]);
    expect(caughtUp).toHaveBeenCalledTimes(1);
    await kafka.batch(0, [{ key: 'a', offset: '12' }]);
    kafka.join([0]); // a rebalance: the history is replayed, caught-up is not signalled again
    expect(caughtUp).toHaveBeenCalledTimes(1);
    expect(seen.map((record) => `${record.offset}:${record.catchUp}`)).toEqual(['3:true', '8:true', '10:false', '11:false', '12:false']);
    await source.stop();
  });

  it('signals caught-up on joining when its partition held nothing at start', async () => {
    const kafka = fakeKafka([
      { partition: 0, low: '0', high: '40' },
      { partition: 1, low: '7', high: '7' },
    ]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const caughtUp = jest.fn();
    await source.start(async () => undefined, () => true, caughtUp);
    kafka.join([]); // another instance holds the route: nothing to catch up with, nothing signalled
    await new Promise((resolve) => setImmediate(resolve));
    expect(caughtUp).not.toHaveBeenCalled();
    kafka.join([1]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(caughtUp).toHaveBeenCalledTimes(1);
    await source.stop();
  });

  it('fetches the history\'s end again for the first batch when the fetch at the assignment failed', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '3' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const caughtUp = jest.fn();
    const seen: DesiredStateRecord[] = [];
    await source.start(async (record) => void seen.push(record), () => true, caughtUp);
    kafka.failNextFetches(1);
    kafka.join([0]);
    await new Promise((resolve) => setImmediate(resolve));
    await kafka.batch(0, [{ key: 'a', offset: '1' }, { key: 'a', offset: '2' }]);
    expect(seen.map((record) => `${record.offset}:${record.catchUp}`)).toEqual(['1:true', '2:true']);
    expect(caughtUp).toHaveBeenCalledTimes(1);
    await source.stop();
  });

  it('starts a new consumer when kafkajs gives up on its own for good, and leaves a restart it makes itself to it', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '3' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const seen: DesiredStateRecord[] = [];
    await source.start(async (record) => void seen.push(record));
    expect(kafka.consumersMade()).toBe(1);
    kafka.crash(true); // kafkajs restarts this one itself
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    expect(kafka.consumersMade()).toBe(1);
    kafka.crash(false); // e.g. "Failed to find group coordinator" while the broker restarts: no restart by kafkajs
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    expect(kafka.consumersMade()).toBe(2);
    await kafka.batch(0, [{ key: 'a', offset: '1' }]); // the new consumer consumes
    expect(seen.map((record) => record.offset)).toEqual(['1']);
    await source.stop();
    kafka.crash(false); // after stop: nothing more
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    expect(kafka.consumersMade()).toBe(2);
  }, 20_000);

  it('signals caught-up for an empty partition even when the fetch of its bounds at the assignment failed', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '4', high: '4' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const caughtUp = jest.fn();
    await source.start(async () => undefined, () => true, caughtUp);
    kafka.failNextFetches(1);
    kafka.join([0]); // no batch will ever come: nothing else would learn that the partition is empty
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(caughtUp).toHaveBeenCalledTimes(1);
    await source.stop();
  });

  it('does not take a partition missing from the bounds as ending at 0 (the whole history new): the batch comes again', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '9' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const seen: DesiredStateRecord[] = [];
    await source.start(async (record) => void seen.push(record));
    await expect(kafka.batch(3, [{ key: 'a', offset: '1' }])).rejects.toThrow('no bounds for partition 3');
    expect(seen).toEqual([]);
    await source.stop();
  });

  it('takes the history as it is when the partition is assigned, not when the instance started', async () => {
    const kafka = fakeKafka([{ partition: 0, low: '0', high: '5' }]);
    const source = new KafkaDesiredStateSource(kafka.kafka, 'pg-main', logger);
    const caughtUp = jest.fn();
    const seen: DesiredStateRecord[] = [];
    await source.start(async (record) => void seen.push(record), () => true, caughtUp);
    kafka.join([]); // idle: another instance holds the route while records are written
    kafka.setOffsets([{ partition: 0, low: '0', high: '20' }]);
    kafka.join([0]); // the route comes to this instance: offsets below 20 are history now
    await kafka.batch(0, [{ key: 'a', offset: '7' }, { key: 'a', offset: '8' }]);
    expect(caughtUp).not.toHaveBeenCalled();
    await kafka.batch(0, [{ key: 'a', offset: '19' }]);
    expect(caughtUp).toHaveBeenCalledTimes(1);
    expect(seen.map((record) => `${record.offset}:${record.catchUp}`)).toEqual(['7:true', '8:true', '19:true']);
    await source.stop();
  });
});
