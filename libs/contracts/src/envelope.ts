import { z } from 'zod';

/**
 * Every message on every Portcullis topic is an envelope around a typed payload.
 *
 * - `messageId` is unique per message: consumers use it to recognise re-deliveries.
 * - `commandId` and `generation` tie a message to the decision it concerns. A system's generation only
 *   grows, so a consumer can always tell an old decision from a newer one.
 * - `keyId` and `signature` are reserved for signed messages (detached signature over the canonical
 *   envelope without `signature`). They are optional in version 1.
 */
export const EnvelopeBaseSchema = z.object({
  messageId: z.uuid(),
  type: z.string().min(1),
  version: z.number().int().positive(),
  occurredAt: z.iso.datetime({ offset: true }),
  producer: z.string().min(1).max(200),
  commandId: z.uuid().optional(),
  generation: z.number().int().nonnegative().optional(),
  keyId: z.string().min(1).optional(),
  signature: z.string().min(1).optional(),
});

export type EnvelopeBase = z.infer<typeof EnvelopeBaseSchema>;
