import {
  ACCESS_ACKNOWLEDGED,
  ACCESS_DRIFT_DETECTED,
  ADAPTER_HEARTBEAT,
  envelopeHeader,
  PrincipalNameSchema,
  type AccessAcknowledgedV1,
  type AccessDriftDetectedV1,
  type AccessState,
  type AcknowledgementStatus,
  type AdapterHeartbeatV1,
} from '@portcullis/contracts';
import type { Drift } from '../state/system-state';
import { producerOf, type AdapterIdentity } from './adapter-identity';
import type { SystemStatus } from './adapter-status';

const MAX_DETAIL_LENGTH = 4000;
const MAX_REPORTED_PRINCIPALS = 1000;

/** The decision an acknowledgement is about. */
export interface AcknowledgedDecision {
  state: AccessState;
  generation: number;
  commandId: string;
}

export interface AcknowledgementReport {
  status: AcknowledgementStatus;
  detail: string;
  willRetry?: boolean;
  principalsChanged?: number;
  sessionsTerminated?: number;
}

function truncate(detail: string): string {
  return detail.length <= MAX_DETAIL_LENGTH ? detail : `${detail.slice(0, MAX_DETAIL_LENGTH - 1)}…`;
}

export function buildAcknowledgement(
  identity: AdapterIdentity,
  systemId: string,
  decision: AcknowledgedDecision,
  report: AcknowledgementReport,
  now = new Date(),
): AccessAcknowledgedV1 {
  return {
    ...envelopeHeader(producerOf(identity), now),
    type: ACCESS_ACKNOWLEDGED,
    version: 1,
    commandId: decision.commandId,
    generation: decision.generation,
    data: {
      adapterId: identity.adapterId,
      systemId,
      desiredState: decision.state,
      status: report.status,
      detail: truncate(report.detail),
      willRetry: report.willRetry,
      principalsChanged: report.principalsChanged,
      sessionsTerminated: report.sessionsTerminated,
    },
  };
}

/**
 * The principals a drift report can carry: what the enforcer named, minus anything that is not a valid
 * principal name, at most 1000 (the contract's limits).
 */
export function reportablePrincipals(principals: readonly string[] | undefined): string[] | undefined {
  return principals?.filter((name) => PrincipalNameSchema.safeParse(name).success).slice(0, MAX_REPORTED_PRINCIPALS);
}

/** Reports access found back on a target although the decision of `drift.generation` revoked it. */
export function buildDriftReport(identity: AdapterIdentity, systemId: string, drift: Drift, now = new Date()): AccessDriftDetectedV1 {
  return {
    ...envelopeHeader(producerOf(identity), now),
    type: ACCESS_DRIFT_DETECTED,
    version: 1,
    commandId: drift.commandId,
    generation: drift.generation,
    data: {
      adapterId: identity.adapterId,
      systemId,
      desiredState: 'revoked',
      observedState: 'active',
      detail: truncate(drift.detail),
      principals: drift.principals,
    },
  };
}

export function buildHeartbeat(
  identity: AdapterIdentity,
  intervalMs: number,
  systems: readonly SystemStatus[],
  now = new Date(),
): AdapterHeartbeatV1 {
  return {
    ...envelopeHeader(producerOf(identity), now),
    type: ADAPTER_HEARTBEAT,
    version: 1,
    data: {
      adapterId: identity.adapterId,
      adapterKind: identity.kind,
      instanceId: identity.instanceId,
      startedAt: identity.startedAt.toISOString(),
      intervalMs,
      systems: systems.map((system) => ({
        systemId: system.systemId,
        desiredState: system.desired?.state,
        desiredGeneration: system.desired?.generation,
        enforcedGeneration: system.applied?.generation,
      })),
    },
  };
}
