import { AccessStateSchema, PrincipalNameSchema, SlugSchema } from '@portcullis/contracts';
import { z } from 'zod';

/** The decision an adapter holds for a system: the newest `system-access.changed` it received. */
export const DesiredAccessSchema = z.object({
  state: AccessStateSchema,
  generation: z.number().int().positive(),
  commandId: z.uuid(),
  exemptPrincipals: z.array(PrincipalNameSchema),
  groupId: SlugSchema,
  requestedBy: z.string(),
  reason: z.string(),
  incidentRef: z.string().optional(),
  receivedAt: z.iso.datetime({ offset: true }),
  /** The signed message this decision came in (optional: files written before messages were signed lack it). */
  messageId: z.uuid().optional(),
  /** Until when the message is valid; a renewal of the same decision moves it on. */
  expiresAt: z.iso.datetime({ offset: true }).optional(),
  /**
   * Read from the topic's history during a catch-up that has not ended yet: possibly not the latest decision,
   * so not enforced until a catch-up ends (also after a restart in between). Cleared when catch-up ends.
   */
  readDuringCatchUp: z.literal(true).optional(),
});
export type DesiredAccess = z.infer<typeof DesiredAccessSchema>;

/** The last decision the enforcer brought the target to (`applied` or `already-in-state`). */
export const AppliedAccessSchema = z.object({
  state: AccessStateSchema,
  generation: z.number().int().positive(),
  commandId: z.uuid(),
  at: z.iso.datetime({ offset: true }),
  detail: z.string(),
  principalsChanged: z.number().int().nonnegative().optional(),
  sessionsTerminated: z.number().int().nonnegative().optional(),
});
export type AppliedAccess = z.infer<typeof AppliedAccessSchema>;

/**
 * Access found back on a target although the applied decision revoked it (someone re-enabled an account
 * by hand), and what is still owed about it: the `access.drift-detected` report, enforcement of the same
 * generation once more, and the `enforced` acknowledgement of that.
 */
export const DriftSchema = z.object({
  /** The generation whose enforcement the target drifted from. */
  generation: z.number().int().positive(),
  commandId: z.uuid(),
  detectedAt: z.iso.datetime({ offset: true }),
  /** What `inspect` found. */
  detail: z.string(),
  principals: z.array(PrincipalNameSchema).optional(),
  /** The drift report is on the broker. */
  reported: z.boolean(),
  /** Enforcement ran again and succeeded; its `enforced` acknowledgement is owed. */
  reenforced: z.boolean(),
});
export type Drift = z.infer<typeof DriftSchema>;

/**
 * The last record of the desired-state topic that was judged for this system (accepted or refused). Records
 * at or before it are history when the topic is read again from its beginning (every start); anything after
 * it is new, and judged — so a replayed or rolled-back message is told apart from the adapter's own catch-up.
 */
export const RecordPositionSchema = z.object({
  partition: z.number().int().nonnegative(),
  offset: z.string().regex(/^[0-9]+$/),
  messageId: z.string().optional(),
});
export type RecordPosition = z.infer<typeof RecordPositionSchema>;

/**
 * Everything an adapter knows about one system, kept as one record (one line of the state log, see
 * `LogStructuredStateStore`) so that every change is one atomic write of the whole record.
 * `applied.generation < desired.generation` means enforcement is owed (also after a crash mid-enforcement);
 * `enforcedAckGeneration < applied.generation` means the `enforced` acknowledgement is owed. A `drift`
 * of the desired generation means enforcement is owed again, and then its acknowledgement.
 */
export const SystemStateRecordSchema = z.object({
  format: z.literal(1),
  systemId: SlugSchema,
  desired: DesiredAccessSchema.optional(),
  applied: AppliedAccessSchema.optional(),
  /** Highest generation acknowledged as `delivered`. */
  deliveredAckGeneration: z.number().int().nonnegative(),
  /** Highest generation acknowledged as `enforced`. */
  enforcedAckGeneration: z.number().int().nonnegative(),
  /** The enforcer's own durable memory for this system (see `EnforcementJournal`). */
  journal: z.unknown().optional(),
  /** Drift being dealt with; gone once reported, enforced again and acknowledged (or superseded). */
  drift: DriftSchema.optional(),
  /** The last desired-state record judged for this system. */
  lastRecord: RecordPositionSchema.optional(),
});
export type SystemStateRecord = z.infer<typeof SystemStateRecordSchema>;

export function emptySystemState(systemId: string): SystemStateRecord {
  return { format: 1, systemId, deliveredAckGeneration: 0, enforcedAckGeneration: 0 };
}
