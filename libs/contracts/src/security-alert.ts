import { z } from 'zod';
import { EnvelopeBaseSchema } from './envelope';
import { SlugSchema } from './identifiers';

export const ADAPTER_SECURITY_ALERT = 'adapter.security-alert' as const;

/**
 * Why an adapter refused a message on the desired-state topic. Every one of these means the message
 * was not acted on; the target did not change.
 * - `unsigned`, `unknown-key`, `bad-signature`: not signed by a key the adapter trusts, or altered after signing;
 * - `malformed`: a message for a system the adapter serves that breaks the contract;
 * - `wrong-target`: signed for another system or another adapter (copied onto this one);
 * - `expired`: signed, but past its `expiresAt` (a captured message replayed late);
 * - `replayed`: a message id already applied, arriving again as a new record;
 * - `rolled-back`: an older generation than one already applied;
 * - `conflicting-generation`: a second, different decision at a generation already applied — only the
 *   signing key can produce it, so it means that key is misused or compromised.
 */
export const SecurityAlertReasonSchema = z.enum([
  'unsigned',
  'unknown-key',
  'bad-signature',
  'malformed',
  'wrong-target',
  'expired',
  'replayed',
  'rolled-back',
  'conflicting-generation',
]);
export type SecurityAlertReason = z.infer<typeof SecurityAlertReasonSchema>;

export const SecurityAlertSeveritySchema = z.enum(['medium', 'high', 'critical']);
export type SecurityAlertSeverity = z.infer<typeof SecurityAlertSeveritySchema>;

/**
 * An adapter refused a message that claimed to be a decision for one of its systems. Published on
 * `Topics.acknowledgements`, keyed by system id, signed by the adapter; the policy service records it
 * in the audit trail as `security.alert`.
 */
export const SecurityAlertV1Schema = EnvelopeBaseSchema.extend({
  type: z.literal(ADAPTER_SECURITY_ALERT),
  version: z.literal(1),
  data: z.object({
    adapterId: SlugSchema,
    systemId: SlugSchema,
    reason: SecurityAlertReasonSchema,
    severity: SecurityAlertSeveritySchema,
    detail: z.string().max(4000),
    /** Where the refused record sits, and what it claimed (unverified). */
    record: z.object({
      partition: z.number().int().nonnegative(),
      offset: z.string().regex(/^[0-9]+$/),
      messageId: z.string().max(200).optional(),
      commandId: z.string().max(200).optional(),
      generation: z.number().int().optional(),
      keyId: z.string().max(200).optional(),
      desiredState: z.string().max(50).optional(),
    }),
  }),
});

export type SecurityAlertV1 = z.infer<typeof SecurityAlertV1Schema>;
