import type { Kafka, Producer } from 'kafkajs';
import { producerStateLost, ReliableProducer } from './reliable-producer';

/** A kafkajs producer that fails its sends with the errors it is given, one per send, then succeeds. */
class FakeProducer {
  readonly sent: string[][] = [];
  disconnected = false;
  constructor(private readonly failures: unknown[]) {}
  async connect(): Promise<void> {}
  async disconnect(): Promise<void> {
    this.disconnected = true;
  }
  async sendBatch(batch: { topicMessages: { messages: { value: string }[] }[] }): Promise<void> {
    const failure = this.failures.shift();
    if (failure) throw failure;
    this.sent.push(batch.topicMessages.flatMap((topic) => topic.messages.map((message) => message.value)));
  }
}

/** How kafkajs reports a protocol error its retries gave up on. */
function protocolError(type: string): Error {
  const cause = Object.assign(new Error(`broker says ${type}`), { name: 'KafkaJSProtocolError', type, retriable: false });
  return Object.assign(new Error(cause.message), { name: 'KafkaJSNonRetriableError', cause });
}

describe('ReliableProducer', () => {
  const message = (value: string) => ({ topic: 'decisions', key: 'stock-db', value });

  function withProducers(...producers: FakeProducer[]): { producer: ReliableProducer; created: () => number } {
    let created = 0;
    const kafka = { producer: () => producers[created++] as unknown as Producer } as unknown as Kafka;
    return { producer: new ReliableProducer(kafka), created: () => created };
  }

  it('continues with a new producer once the broker refuses its sequence numbers', async () => {
    const wedged = new FakeProducer([protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER'), protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER')]);
    const fresh = new FakeProducer([]);
    const { producer, created } = withProducers(wedged, fresh);

    await expect(producer.send([message('generation 7')])).rejects.toThrow(/OUT_OF_ORDER_SEQUENCE_NUMBER/);
    expect(created()).toBe(2);
    expect(wedged.disconnected).toBe(true);

    // The caller sends the failed records again: now through a producer with a new id.
    await producer.send([message('generation 7'), message('generation 8')]);
    expect(fresh.sent).toEqual([['generation 7', 'generation 8']]);
  });

  it('keeps its producer after other failures (a broker that is down, say): kafkajs recovers from those', async () => {
    const down = Object.assign(new Error('Connection error: connect ECONNREFUSED'), { name: 'KafkaJSNumberOfRetriesExceeded' });
    const only = new FakeProducer([down]);
    const { producer, created } = withProducers(only, new FakeProducer([]));

    await expect(producer.send([message('generation 7')])).rejects.toThrow(/ECONNREFUSED/);
    await producer.send([message('generation 7')]);
    expect(created()).toBe(1);
    expect(only.sent).toEqual([['generation 7']]);
  });

  it('recognises the errors after which a producer id is of no further use, however wrapped', () => {
    expect(producerStateLost(protocolError('UNKNOWN_PRODUCER_ID'))).toBe(true);
    expect(producerStateLost(protocolError('INVALID_PRODUCER_EPOCH'))).toBe(true);
    expect(producerStateLost(protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER').cause)).toBe(true);
    expect(producerStateLost(protocolError('NOT_LEADER_FOR_PARTITION'))).toBe(false);
    expect(producerStateLost(new Error('anything'))).toBe(false);
    expect(producerStateLost(undefined)).toBe(false);
  });
});
