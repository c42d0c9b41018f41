import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { AccessStateSchema, PrincipalNameSchema, SlugSchema } from './identifiers';

export const SYSTEM_ACCESS_CHANGED = 'system-access.changed' as const;

/** At most this many break-glass principals per system: a decision carries all of them. */
export const MAX_EXEMPT_PRINCIPALS = 1000;

/**
 * The policy service's decision about one system: its desired access state at a generation.
 * Published on `Topics.systemAccess`, keyed by system id. This is state, not a delta: the latest
 * generation for a system is the whole truth, whatever came before it.
 *
 * Signed by the policy service (`keyId`, `signature`; see `signMessage`): adapters refuse unsigned,
 * unknown-key, tampered, expired, re-targeted, replayed and rolled-back messages and report them with
 * `adapter.security-alert`.
 */
export const SystemAccessChangedV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(SYSTEM_ACCESS_CHANGED),
  version: z.literal(1),
  commandId: z.uuid(),
  generation: z.number().int().positive(),
  data: z.object({
    systemId: SlugSchema,
    systemKind: SlugSchema,
    /**
     * The adapter registered for the system: the only one that may enforce this decision. Signed with
     * the rest, so a decision copied onto another system or another adapter is refused.
     */
    adapterId: SlugSchema,
    desiredState: AccessStateSchema,
    /** The group decision that caused this change. */
    groupId: SlugSchema,
    action: z.enum(['revoke', 'restore']),
    reason: z.string().min(1).max(2000),
    incidentRef: z.string().min(1).max(200).optional(),
    requestedBy: z.string().min(1).max(200),
    /** Break-glass principals that adapters must never touch on this system. */
    exemptPrincipals: z.array(PrincipalNameSchema).max(MAX_EXEMPT_PRINCIPALS),
    /** When the policy service considers an acknowledgement late. */
    acknowledgeBy: z.iso.datetime({ offset: true }),
    /**
     * After this time adapters refuse the message: a captured signed decision cannot be replayed for
     * ever. The policy service re-issues the current decision of every system (same command and
     * generation, new message id and expiry) well before it expires, so the latest record of a system
     * on the compacted topic is always valid.
     */
    expiresAt: z.iso.datetime({ offset: true }),
  }),
});

export type SystemAccessChangedV1 = z.infer<typeof SystemAccessChangedV1Schema>;
