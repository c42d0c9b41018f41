import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { AccessStateSchema, PrincipalNameSchema, SlugSchema } from './identifiers';

export const SYSTEM_ACCESS_CHANGED = 'system-access.changed' as const;

/**
 * The policy service's decision about one system: its desired access state at a generation.
 * Published on `Topics.systemAccess`, keyed by system id. This is state, not a delta: the latest
 * generation for a system is the whole truth, whatever came before it.
 */
export const SystemAccessChangedV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(SYSTEM_ACCESS_CHANGED),
  version: z.literal(1),
  commandId: z.uuid(),
  generation: z.number().int().positive(),
  data: z.object({
    systemId: SlugSchema,
    systemKind: SlugSchema,
    desiredState: AccessStateSchema,
    /** The group decision that caused this change. */
    groupId: SlugSchema,
    action: z.enum(['revoke', 'restore']),
    reason: z.string().min(1).max(2000),
    incidentRef: z.string().min(1).max(200).optional(),
    requestedBy: z.string().min(1).max(200),
    /** Break-glass principals that adapters must never touch on this system. */
    exemptPrincipals: z.array(PrincipalNameSchema).max(1000),
    /** When the policy service considers an acknowledgement late. */
    acknowledgeBy: z.iso.datetime({ offset: true }),
  }),
});

export type SystemAccessChangedV1 = z.infer<typeof SystemAccessChangedV1Schema>;
