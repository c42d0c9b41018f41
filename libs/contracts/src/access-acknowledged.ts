import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { AccessStateSchema, SlugSchema } from './identifiers';

export const ACCESS_ACKNOWLEDGED = 'access.acknowledged' as const;

export const AcknowledgementStatusSchema = z.enum(['delivered', 'enforced', 'failed']);
export type AcknowledgementStatus = z.infer<typeof AcknowledgementStatusSchema>;

/**
 * An adapter's report about one (command, system):
 * - `delivered`: the adapter holds the decision durably and will enforce it;
 * - `enforced`: the adapter has checked the target and it is in the desired state;
 * - `failed`: enforcement failed; `willRetry` says whether the adapter keeps trying.
 * Published on `Topics.acknowledgements`, keyed by system id.
 */
export const AccessAcknowledgedV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(ACCESS_ACKNOWLEDGED),
  version: z.literal(1),
  commandId: z.uuid(),
  generation: z.number().int().positive(),
  data: z.object({
    adapterId: SlugSchema,
    systemId: SlugSchema,
    desiredState: AccessStateSchema,
    status: AcknowledgementStatusSchema,
    detail: z.string().max(4000),
    willRetry: z.boolean().optional(),
    /** Principals whose access this enforcement changed. */
    principalsChanged: z.number().int().nonnegative().optional(),
    /** Open sessions or connections of affected principals that were terminated. */
    sessionsTerminated: z.number().int().nonnegative().optional(),
  }),
});

export type AccessAcknowledgedV1 = z.infer<typeof AccessAcknowledgedV1Schema>;
