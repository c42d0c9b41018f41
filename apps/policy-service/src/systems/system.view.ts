import type { SystemEntity } from '../database/entities';
import { exemptionView, isExemptionValid, type ExemptionFacts } from './exemptions';

/**
 * How a system is shown: its registration, its break-glass exemptions and where enforcement stands.
 * `exemptPrincipals` lists the exemptions valid now (what the next decision carries); `exemptions` all of
 * them, expired ones included, with reason, author and expiry.
 */
export function systemView(system: SystemEntity, exemptions: readonly ExemptionFacts[], now = new Date()) {
  const sorted = [...exemptions].sort((a, b) => (a.principal < b.principal ? -1 : a.principal > b.principal ? 1 : 0));
  return {
    id: system.id,
    name: system.name,
    kind: system.kind,
    adapterId: system.adapterId,
    exemptPrincipals: sorted.filter((exemption) => isExemptionValid(exemption, now)).map((exemption) => exemption.principal),
    exemptions: sorted.map((exemption) => exemptionView(exemption, now)),
    desiredState: system.desiredState,
    generation: system.generation,
    desiredCommandId: system.desiredCommandId,
    enforcement: {
      status: system.enforcementStatus,
      enforcedGeneration: system.enforcedGeneration,
      detail: system.enforcementDetail,
      acknowledgedBy: system.acknowledgedBy,
      lastAcknowledgedAt: system.lastAcknowledgedAt?.toISOString() ?? null,
    },
    /** The last time an adapter found access restored out of band (and re-enforced), if ever. */
    lastDrift: system.lastDriftAt ? { detectedAt: system.lastDriftAt.toISOString(), detail: system.lastDriftDetail } : null,
    createdAt: system.createdAt.toISOString(),
    updatedAt: system.updatedAt.toISOString(),
  };
}

export type SystemView = ReturnType<typeof systemView>;
