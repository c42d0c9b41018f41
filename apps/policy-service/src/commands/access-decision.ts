import type { AccessState } from '@portcullis/contracts';
import type { CommandAction } from '../database/entities';

export interface SystemAccessDecision {
  /** The system's effective state after the group decision. */
  desiredState: AccessState;
  /** Whether the effective state changes, and so a new generation is published. */
  changes: boolean;
  /** Other revoked groups that keep the system revoked. */
  heldBy: string[];
}

/**
 * A system is revoked while ANY group containing it is revoked. Revoking a group revokes all its systems;
 * restoring it gives access back only to systems that no other revoked group covers.
 */
export function decideSystemAccess(
  action: CommandAction,
  current: AccessState,
  otherRevokedGroups: readonly string[],
): SystemAccessDecision {
  const heldBy = [...otherRevokedGroups].sort();
  const desiredState: AccessState = action === 'revoke' || heldBy.length > 0 ? 'revoked' : 'active';
  return { desiredState, changes: desiredState !== current, heldBy };
}
