import { randomUUID } from 'node:crypto';
import { envelopeHeader, SYSTEM_ACCESS_CHANGED, type AccessState, type SystemAccessChangedV1 } from '@portcullis/contracts';

export interface DecisionSpec {
  systemId: string;
  generation: number;
  state: AccessState;
  systemKind?: string;
  exemptPrincipals?: string[];
  commandId?: string;
  /** Default: `fake-main`, the adapter id of the runtime specs. */
  adapterId?: string;
  /** Default: an hour from now. */
  expiresAt?: Date;
}

/** A valid `system-access.changed` decision, as the policy service publishes it (before signing). */
export function systemAccessChanged(spec: DecisionSpec): SystemAccessChangedV1 {
  const now = new Date();
  return {
    ...envelopeHeader('policy-service', now),
    type: SYSTEM_ACCESS_CHANGED,
    version: 1,
    commandId: spec.commandId ?? randomUUID(),
    generation: spec.generation,
    data: {
      systemId: spec.systemId,
      systemKind: spec.systemKind ?? 'fake',
      adapterId: spec.adapterId ?? 'fake-main',
      desiredState: spec.state,
      groupId: 'back-office',
      action: spec.state === 'revoked' ? 'revoke' : 'restore',
      reason: 'test decision',
      requestedBy: 'alice',
      exemptPrincipals: spec.exemptPrincipals ?? [],
      acknowledgeBy: new Date(now.getTime() + 60_000).toISOString(),
      expiresAt: (spec.expiresAt ?? new Date(now.getTime() + 3_600_000)).toISOString(),
    },
  };
}
