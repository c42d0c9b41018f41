import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { AccessStateSchema, SlugSchema } from './identifiers';

export const ADAPTER_HEARTBEAT = 'adapter.heartbeat' as const;

/**
 * An adapter's periodic statement that it is alive, whether it can still take decisions, which systems
 * it serves and where each one stands. Published on `Topics.adapterHeartbeats`, keyed by adapter id.
 */
export const AdapterHeartbeatV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(ADAPTER_HEARTBEAT),
  version: z.literal(1),
  data: z.object({
    adapterId: SlugSchema,
    adapterKind: SlugSchema,
    instanceId: z.string().min(1).max(200),
    startedAt: z.iso.datetime({ offset: true }),
    intervalMs: z.number().int().positive(),
    /**
     * Whether the adapter can store decisions: `failed` means it takes and enforces none until it is
     * restarted (a full disk, say), although it is alive. Absent from adapters older than this field.
     */
    stateStore: z
      .object({
        status: z.enum(['ok', 'failed']),
        error: z.string().max(2000).optional(),
      })
      .optional(),
    systems: z
      .array(
        z.object({
          systemId: SlugSchema,
          desiredState: AccessStateSchema.optional(),
          desiredGeneration: z.number().int().nonnegative().optional(),
          enforcedGeneration: z.number().int().nonnegative().optional(),
        }),
      )
      .max(100000),
  }),
});

export type AdapterHeartbeatV1 = z.infer<typeof AdapterHeartbeatV1Schema>;
