import { randomUUID } from 'node:crypto';
import { envelopeHeader, SYSTEM_ACCESS_CHANGED, type AccessState, type SystemAccessChangedV1 } from '@portcullis/contracts';

export interface DecisionSpec {
  systemId: string;
  generation: number;
  state: AccessState;
  systemKind?: string;
  exemptPrincipals?: string[];
  commandId?: string;
}

/** A valid `system-access.changed` decision, as the policy service publishes it. */
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
      desiredState: spec.state,
      groupId: 'back-office',
      action: spec.state === 'revoked' ? 'revoke' : 'restore',
      reason: 'test decision',
      requestedBy: 'alice',
      exemptPrincipals: spec.exemptPrincipals ?? [],
      acknowledgeBy: new Date(now.getTime() + 60_000).toISOString(),
    },
  };
}
