import { randomUUID } from 'node:crypto';
import { emptySystemState, type SystemStateRecord } from '../state/system-state';

/** A stored state for the state-store specs: revoked at `generation`, with a delivered ack and a journal. */
export function revokedSystemState(systemId: string, generation: number): SystemStateRecord {
  return {
    ...emptySystemState(systemId),
    desired: {
      state: 'revoked',
      generation,
      commandId: randomUUID(),
      exemptPrincipals: ['breakglass'],
      groupId: 'back-office',
      requestedBy: 'alice',
      reason: 'incident',
      receivedAt: new Date().toISOString(),
    },
    deliveredAckGeneration: generation,
    journal: { revokedRoles: ['clerk'] },
  };
}
