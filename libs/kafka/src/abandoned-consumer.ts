import type { Consumer } from 'kafkajs';

export interface ReplaceWhenAbandonedOptions {
  /** True once the owner is shutting down: nothing is replaced any more. */
  isStopped: () => boolean;
  /** kafkajs gave up on the consumer (logged as an error by the owner). */
  onAbandoned: (error: Error) => void;
  /** A replacement could not be started; another attempt follows after a longer wait. */
  onReplaceFailed: (error: unknown, attempt: number) => void;
}

/**
 * kafkajs restarts a crashed consumer only after errors it deems retriable. After any other — "Failed to
 * find group coordinator" while a broker restarts, an authorization error while ACLs are being changed — it
 * disconnects the consumer and leaves it so for the life of the process: a consumer that silently never
 * consumes again. This watches `consumer` and, when kafkajs abandons it, calls `replace` (which makes and
 * starts a new consumer, and watches it the same way) after a back-off of 1 s doubling to 30 s, until a
 * replacement starts.
 */
export function replaceWhenAbandoned(consumer: Consumer, replace: () => Promise<void>, options: ReplaceWhenAbandonedOptions): void {
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart || options.isStopped()) return;
    options.onAbandoned(payload.error);
    const attemptAfter = (attempt: number): void => {
      setTimeout(async () => {
        if (options.isStopped()) return;
        await consumer.disconnect().catch(() => undefined);
        try {
          await replace();
        } catch (error) {
          options.onReplaceFailed(error, attempt + 1);
          attemptAfter(attempt + 1);
        }
      }, Math.min(30_000, 1_000 * 2 ** attempt)).unref();
    };
    attemptAfter(0);
  });
}
