import type { Consumer } from 'kafkajs';
import { replaceWhenAbandoned } from './abandoned-consumer';

function fakeConsumer() {
  let onCrash: ((event: { payload: { error: Error; restart: boolean } }) => void) | undefined;
  const consumer = {
    events: { CRASH: 'consumer.crash' },
    on: (_event: string, listener: typeof onCrash) => (onCrash = listener),
    disconnect: jest.fn(async () => undefined),
  };
  return { consumer: consumer as unknown as Consumer, disconnect: consumer.disconnect, crash: (restart: boolean) => onCrash!({ payload: { error: new Error('Failed to find group coordinator'), restart } }) };
}

/** Lets the timers' async callbacks run to their next await. */
const flush = () => new Promise((resolve) => jest.requireActual<typeof import('timers')>('timers').setImmediate(resolve));

describe('replaceWhenAbandoned', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('replaces a consumer kafkajs gave up on (after 1 s, then backing off), and leaves one it restarts itself alone', async () => {
    const { consumer, disconnect, crash } = fakeConsumer();
    const replace = jest.fn<Promise<void>, []>().mockRejectedValueOnce(new Error('broker still down')).mockResolvedValue(undefined);
    const onAbandoned = jest.fn();
    const onReplaceFailed = jest.fn();
    replaceWhenAbandoned(consumer, replace, { isStopped: () => false, onAbandoned, onReplaceFailed });

    crash(true); // kafkajs restarts it
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(replace).not.toHaveBeenCalled();

    crash(false);
    expect(onAbandoned).toHaveBeenCalledTimes(1);
    jest.advanceTimersByTime(999);
    await flush();
    expect(replace).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    await flush();
    await flush();
    expect(disconnect).toHaveBeenCalled();
    expect(replace).toHaveBeenCalledTimes(1);
    expect(onReplaceFailed).toHaveBeenCalledWith(expect.any(Error), 1);
    jest.advanceTimersByTime(2_000); // the second attempt, after twice the wait
    await flush();
    await flush();
    expect(replace).toHaveBeenCalledTimes(2);
    jest.advanceTimersByTime(60_000);
    await flush();
    expect(replace).toHaveBeenCalledTimes(2); // started: no more attempts
  });

  it('replaces nothing once its owner is stopping', async () => {
    const { consumer, crash } = fakeConsumer();
    const replace = jest.fn(async () => undefined);
    let stopped = false;
    replaceWhenAbandoned(consumer, replace, { isStopped: () => stopped, onAbandoned: () => undefined, onReplaceFailed: () => undefined });
    crash(false);
    stopped = true; // shutting down during the back-off
    jest.advanceTimersByTime(5_000);
    await flush();
    expect(replace).not.toHaveBeenCalled();
  });
});
