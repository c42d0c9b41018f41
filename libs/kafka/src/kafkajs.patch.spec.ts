/**
 * patches/kafkajs+2.2.4.patch, applied by `npm ci` (postinstall: patch-package). These specs fail on the
 * unpatched files.
 *
 * 1. kafkajs 2.2.4's RequestQueue re-armed a 1 ms timer after every response and every check, forever, on
 *    every broker connection (kafkajs#1556, #1704), whether or not a request was waiting.
 * 2. A consumer group heartbeat (and its final leave) went to the coordinator it found when it joined, even
 *    after a fetch that met a closed connection had removed that broker from the cluster's pool: it
 *    reconnected the removed broker, and no disconnect() ever closed that connection.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const RequestQueue = require('kafkajs/src/network/requestQueue') as new (options: Record<string, unknown>) => {
  throttleCheckTimeoutId: unknown;
  inflight: Map<number, unknown>;
  pending: unknown[];
  push(request: { entry: { correlationId: number; apiName: string; apiKey: number; apiVersion: number }; expectResponse: boolean; sendRequest: () => void }): void;
  fulfillRequest(response: { correlationId: number; payload: Buffer | null; size: number }): void;
  maybeThrottle(ms: number): void;
  destroy(): void;
};

const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function queue(maxInFlightRequests: number | null = null) {
  return new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 'spec', broker: 'b:9092', logger });
}

function request(correlationId: number, sent: number[]) {
  return {
    entry: { correlationId, apiName: 'Fetch', apiKey: 1, apiVersion: 11, resolve: () => undefined, reject: () => undefined },
    expectResponse: true,
    sendRequest: () => sent.push(correlationId),
  };
}

describe('kafkajs RequestQueue (patched)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('arms no timer once a response leaves nothing pending', () => {
    const q = queue();
    const sent: number[] = [];
    q.push(request(1, sent));
    expect(sent).toEqual([1]);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(q.throttleCheckTimeoutId).toBeNull();
    expect(jest.getTimerCount()).toBe(0);
    q.destroy();
  });

  it('still sends a request that waited out a broker throttle', () => {
    const q = queue();
    const sent: number[] = [];
    q.maybeThrottle(50);
    q.push(request(1, sent));
    expect(sent).toEqual([]);
    jest.advanceTimersByTime(60);
    expect(sent).toEqual([1]);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(jest.getTimerCount()).toBe(0);
    q.destroy();
  });

  it('still sends a request that waited for an in-flight slot, when the slot frees', () => {
    const q = queue(1);
    const sent: number[] = [];
    q.push(request(1, sent));
    q.push(request(2, sent));
    expect(sent).toEqual([1]);
    q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
    expect(sent).toEqual([1, 2]);
    q.fulfillRequest({ correlationId: 2, payload: null, size: 0 });
    jest.advanceTimersByTime(100);
    expect(jest.getTimerCount()).toBe(0);
    q.destroy();
  });
});

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup') as new (options: Record<string, unknown>) => {
  coordinator: unknown;
  memberId: string | null;
  heartbeat(options: { interval: number }): Promise<void>;
  leave(): Promise<void>;
};

describe('kafkajs ConsumerGroup heartbeat (patched)', () => {
  const rootLogger = { namespace: () => logger };
  const broker = (connected: boolean) => ({
    nodeId: 1,
    isConnected: () => connected,
    heartbeat: jest.fn(async () => undefined),
    leaveGroup: jest.fn(async () => undefined),
  });
  const group = (findBroker: (b: { nodeId: number }) => Promise<unknown>) => {
    const consumerGroup = new ConsumerGroup({
      cluster: { findBroker },
      groupId: 'g',
      topics: [],
      topicConfigurations: {},
      logger: rootLogger,
      instrumentationEmitter: { emit: () => undefined },
      retry: { retries: 0 },
    });
    consumerGroup.memberId = 'member-1';
    return consumerGroup;
  };

  it('finds the coordinator again when the one it joined through lost its connection', async () => {
    const removed = broker(false);
    const current = broker(true);
    const consumerGroup = group(async ({ nodeId }) => (nodeId === 1 ? current : undefined));
    consumerGroup.coordinator = removed;
    await consumerGroup.heartbeat({ interval: 0 });
    expect(removed.heartbeat).not.toHaveBeenCalled();
    expect(current.heartbeat).toHaveBeenCalledTimes(1);
    expect(consumerGroup.coordinator).toBe(current);
  });

  it('leaves the group through the current coordinator too', async () => {
    const removed = broker(false);
    const current = broker(true);
    const consumerGroup = group(async () => current);
    consumerGroup.coordinator = removed;
    await consumerGroup.leave();
    expect(removed.leaveGroup).not.toHaveBeenCalled();
    expect(current.leaveGroup).toHaveBeenCalledWith({ groupId: 'g', memberId: 'member-1' });
  });

  it('keeps a connected coordinator', async () => {
    const connected = broker(true);
    const findBroker = jest.fn();
    const consumerGroup = group(findBroker);
    consumerGroup.coordinator = connected;
    await consumerGroup.heartbeat({ interval: 0 });
    expect(connected.heartbeat).toHaveBeenCalledTimes(1);
    expect(findBroker).not.toHaveBeenCalled();
  });
});
