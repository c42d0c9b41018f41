import { EventPattern } from '@nestjs/microservices';
import type { z } from 'zod';

export const CONTRACT_EXTRA = 'portcullisContract';

/**
 * Marks a controller method as the handler of every message on `topic`. The transport validates each
 * message against `contract` before the handler runs; a message that breaks it goes to the dead-letter
 * topic instead of stalling the partition.
 */
export function KafkaEvent(topic: string, contract: z.ZodType): MethodDecorator {
  return EventPattern(topic, { [CONTRACT_EXTRA]: contract });
}
