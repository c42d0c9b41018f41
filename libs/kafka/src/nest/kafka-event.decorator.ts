import { EventPattern } from '@nestjs/microservices';
import type { z } from 'zod';

export const CONTRACT_EXTRA = 'portcullisContract';
export const BATCH_EXTRA = 'portcullisBatch';

export interface KafkaEventOptions {
  /**
   * Hand the handler every valid message of a fetched batch of one partition at once, in order, as
   * `KafkaEventBatchItem[]` (at most `maxBatchSize` per call): one transaction can then record them all.
   * The offsets are committed only after the handler succeeded for the whole slice.
   */
  batch?: boolean;
}

/**
 * Marks a controller method as the handler of every message on `topic`. The transport validates each
 * message against `contract` before the handler runs; a message that breaks it goes to the dead-letter
 * topic instead of stalling the partition.
 */
export function KafkaEvent(topic: string, contract: z.ZodType, options: KafkaEventOptions = {}): MethodDecorator {
  return EventPattern(topic, { [CONTRACT_EXTRA]: contract, [BATCH_EXTRA]: options.batch === true });
}
