import type { SystemEntity } from '../database/entities';

/** How a system is shown: its registration and where enforcement stands. */
export function systemView(system: SystemEntity) {
  return {
    id: system.id,
    name: system.name,
    kind: system.kind,
    exemptPrincipals: system.exemptPrincipals,
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
