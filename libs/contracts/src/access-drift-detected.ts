import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { AccessStateSchema, PrincipalNameSchema, SlugSchema } from './identifiers';

export const ACCESS_DRIFT_DETECTED = 'access.drift-detected' as const;

/**
 * An adapter found a target out of its desired state although it had been enforced: access came back
 * out of band (someone re-enabled an account). The adapter re-enforces and reports the outcome with a
 * new `access.acknowledged`. Published on `Topics.acknowledgements`, keyed by system id, so it stays
 * in order with the acknowledgements of the same system.
 */
export const AccessDriftDetectedV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(ACCESS_DRIFT_DETECTED),
  version: z.literal(1),
  commandId: z.uuid(),
  generation: z.number().int().positive(),
  data: z.object({
    adapterId: SlugSchema,
    systemId: SlugSchema,
    desiredState: AccessStateSchema,
    /** What the adapter observed on the target. */
    observedState: z.enum(['active', 'revoked', 'unknown']),
    detail: z.string().max(4000),
    /** Principals found with access they should not have, where the adapter can name them. */
    principals: z.array(PrincipalNameSchema).max(1000).optional(),
  }),
});

export type AccessDriftDetectedV1 = z.infer<typeof AccessDriftDetectedV1Schema>;
