import type { TargetStatus } from '../database/entities';

/**
 * - `pending`: some systems have not confirmed yet, within the deadline;
 * - `overdue`: some systems have not confirmed and the deadline has passed;
 * - `enforced`: every system confirmed the desired state;
 * - `partial`: nothing is waiting, some systems enforced and some failed;
 * - `failed`: nothing is waiting and no system enforced;
 * - `superseded`: every system has since received a newer decision.
 */
export type CommandStatus = 'pending' | 'overdue' | 'enforced' | 'partial' | 'failed' | 'superseded';

/**
 * What a command shows: its enforcement status once it was applied, or, for a restore request not (yet)
 * applied, where the request stands: `awaiting-approval`, `rejected`, `expired` or `superseded`.
 */
export type CommandViewStatus = CommandStatus | 'awaiting-approval' | 'rejected' | 'expired';

export function isAwaitingAcknowledgement(status: TargetStatus): boolean {
  return status === 'pending' || status === 'delivered';
}

export function aggregateCommandStatus(
  targets: readonly { status: TargetStatus }[],
  acknowledgeBy: Date,
  now: Date,
): CommandStatus {
  const live = targets.filter((target) => target.status !== 'superseded');
  if (targets.length > 0 && live.length === 0) return 'superseded';
  if (live.every((target) => target.status === 'enforced')) return 'enforced';
  if (live.some((target) => isAwaitingAcknowledgement(target.status))) {
    return now.getTime() > acknowledgeBy.getTime() ? 'overdue' : 'pending';
  }
  return live.some((target) => target.status === 'enforced') ? 'partial' : 'failed';
}
