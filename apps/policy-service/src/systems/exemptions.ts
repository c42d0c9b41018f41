import type { AccessState } from '@portcullis/contracts';
import { In, type EntityManager } from 'typeorm';
import { SystemExemptionEntity } from '../database/entities';

/**
 * Break-glass exemptions: principals adapters never disable on a system, so that responders keep a way in
 * during a revocation. Each is explicit (who added it, why, when) and may expire; every published decision
 * carries the exemptions valid at that moment, and only those.
 */

export type ExemptionFacts = Pick<SystemExemptionEntity, 'principal' | 'reason' | 'createdBy' | 'createdAt' | 'expiresAt'>;

export function isExemptionValid(exemption: Pick<SystemExemptionEntity, 'expiresAt'>, now: Date): boolean {
  return exemption.expiresAt === null || exemption.expiresAt.getTime() > now.getTime();
}

export function exemptionView(exemption: ExemptionFacts, now: Date) {
  return {
    principal: exemption.principal,
    reason: exemption.reason,
    createdBy: exemption.createdBy,
    createdAt: exemption.createdAt.toISOString(),
    expiresAt: exemption.expiresAt?.toISOString() ?? null,
    expired: !isExemptionValid(exemption, now),
  };
}

export type ExemptionView = ReturnType<typeof exemptionView>;

/**
 * Why changing a system's exemption must wait until the system is restored, or `null` if it may change now.
 *
 * Portcullis decides per group of systems; there is no per-principal revoke. While a system is revoked, its
 * break-glass accounts are the only access responders have, and each adapter disables every principal that
 * is not exempt in the decision it enforces. Removing (or cutting short) a currently valid exemption during
 * a revocation would therefore withdraw that break-glass account at the next enforcement of the system (the
 * next decision, a re-issue, a drift re-check) — an access withdrawal nobody decided as such, in the middle
 * of an incident. So it is refused: restore first, then change the exemption. Adding an exemption or
 * extending one is always allowed, and removing one that already expired withdraws nothing.
 */
export function exemptionChangeRefusal(
  systemState: AccessState,
  current: Pick<SystemExemptionEntity, 'expiresAt'> | null,
  next: Pick<SystemExemptionEntity, 'expiresAt'> | null,
  now: Date,
): string | null {
  if (systemState !== 'revoked' || current === null || !isExemptionValid(current, now)) return null;
  if (next === null) return 'would withdraw a break-glass account during a revocation; restore first';
  const shortened =
    next.expiresAt !== null && (current.expiresAt === null || next.expiresAt.getTime() < current.expiresAt.getTime());
  return shortened ? 'would cut short a break-glass exemption during a revocation; restore first' : null;
}

/** SQL: the exemption row `alias` of `system_exemptions` is valid at `at` (a parameter): `isExemptionValid` in SQL. */
export function exemptionValidAt(alias: string, at: string): string {
  return `(${alias}.expires_at IS NULL OR ${alias}.expires_at > ${at})`;
}

/**
 * The valid exemptions of systems $1 (text[]) at $2 (timestamptz): rows of (system_id, principals sorted),
 * none for a system without one. Decisions read it after locking their systems (see GroupDecisionsService).
 */
export const VALID_EXEMPTIONS_SQL = `SELECT e.system_id, array_agg(e.principal ORDER BY e.principal) AS principals
  FROM system_exemptions e
  WHERE e.system_id = ANY($1::text[]) AND ${exemptionValidAt('e', '$2')}
  GROUP BY e.system_id`;

/** Every exemption (expired ones too) of several systems at once, for views. */
export async function exemptionsBySystem(
  manager: EntityManager,
  systemIds: readonly string[],
): Promise<Map<string, SystemExemptionEntity[]>> {
  const bySystem = new Map<string, SystemExemptionEntity[]>();
  if (systemIds.length === 0) return bySystem;
  const rows = await manager.find(SystemExemptionEntity, { where: { systemId: In([...systemIds]) } });
  for (const row of rows) {
    const list = bySystem.get(row.systemId);
    if (list) list.push(row);
    else bySystem.set(row.systemId, [row]);
  }
  return bySystem;
}
