import type { AccessState } from '@portcullis/contracts';
import type { Role } from '../auth/roles';
import type { RestoreApprovalMode, RestoreRequestStatus } from '../database/entities';

/**
 * Four eyes on restore. Revoking stays fast (one security lead), but giving access back during an
 * incident is where a hurried or coerced single person does the most harm, so by default a restore is
 * a REQUEST that a different security lead must approve before it expires. A group may allow one admin
 * to restore it alone (`single-admin`); a security lead without the admin role still needs approval there.
 *
 * Pure rules only; the transactions that apply them are in GroupDecisionsService.
 */

/** What happens with `POST /groups/:id/restore` for this caller and this group. */
export type RestoreRoute = 'apply-now' | 'request-approval' | 'forbidden';

export function restoreRoute(mode: RestoreApprovalMode, roles: readonly Role[]): RestoreRoute {
  if (mode === 'single-admin' && roles.includes('admin')) return 'apply-now';
  return roles.includes('security-lead') ? 'request-approval' : 'forbidden';
}

export interface RestoreRequestFacts {
  approvalStatus: RestoreRequestStatus;
  approvalExpiresAt: Date;
  requestedBy: string;
  /** The group's last decision when the request was made. */
  approvalBasisCommandId: string | null;
}

export interface GroupFacts {
  state: AccessState;
  lastCommandId: string | null;
}

/**
 * Where a request stands at `now`: one still marked awaiting whose time ran out is expired even before
 * anyone noticed (and recorded it).
 */
export function effectiveRequestStatus(
  request: Pick<RestoreRequestFacts, 'approvalStatus' | 'approvalExpiresAt'>,
  now: Date,
): RestoreRequestStatus {
  if (request.approvalStatus === 'awaiting-approval' && now.getTime() >= request.approvalExpiresAt.getTime()) return 'expired';
  return request.approvalStatus;
}

/**
 * Why a request is void although nobody closed it: the group is no longer in the state it was requested
 * against (restored meanwhile, or revoked again by a newer decision). `null` while it still applies.
 */
export function supersededBecause(request: Pick<RestoreRequestFacts, 'approvalBasisCommandId'>, group: GroupFacts): string | null {
  if (group.state !== 'revoked') return 'the group is no longer revoked';
  if (group.lastCommandId !== request.approvalBasisCommandId) {
    return `the group was revoked again by command ${group.lastCommandId} after the request was made`;
  }
  return null;
}

export type ApprovalVerdict =
  | { ok: true }
  /** Decided already (approved, rejected) or closed earlier (expired, superseded): nothing to do. */
  | { ok: false; refusal: 'closed'; status: RestoreRequestStatus }
  /** Ran out of time now; it is to be recorded as expired. */
  | { ok: false; refusal: 'expired' }
  /** The group moved on; it is to be recorded as superseded. */
  | { ok: false; refusal: 'superseded'; why: string }
  /** Four eyes: the requester cannot approve their own request. */
  | { ok: false; refusal: 'own-request' };

/**
 * Whether `decider` may approve (or reject) the request now. Order matters: a closed request is closed
 * for everyone; time runs out before anything else is considered; the requester may withdraw (reject)
 * their own request but never approve it; a request the group has outgrown is void.
 */
export function judgeDecision(
  kind: 'approve' | 'reject',
  request: RestoreRequestFacts,
  decider: string,
  group: GroupFacts,
  now: Date,
): ApprovalVerdict {
  if (request.approvalStatus !== 'awaiting-approval') return { ok: false, refusal: 'closed', status: request.approvalStatus };
  if (effectiveRequestStatus(request, now) === 'expired') return { ok: false, refusal: 'expired' };
  if (kind === 'approve' && decider === request.requestedBy) return { ok: false, refusal: 'own-request' };
  const why = supersededBecause(request, group);
  if (why) return { ok: false, refusal: 'superseded', why };
  return { ok: true };
}
