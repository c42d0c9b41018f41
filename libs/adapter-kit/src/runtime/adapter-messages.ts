import {
  ACCESS_ACKNOWLEDGED,
  ACCESS_DRIFT_DETECTED,
  ADAPTER_HEARTBEAT,
  ADAPTER_SECURITY_ALERT,
  type SecurityAlertReason,
  type SecurityAlertSeverity,
  type SecurityAlertV1,
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
import type { StateStoreStatus, SystemStatus } from './adapter-status';

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
  stateStore: StateStoreStatus,
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
      stateStore: stateStore.status === 'ok' ? { status: 'ok' } : { status: 'failed', error: stateStore.error?.slice(0, 2000) },
      systems: systems.map((system) => ({
        systemId: system.systemId,
        desiredState: system.desired?.state,
        desiredGeneration: system.desired?.generation,
        enforcedGeneration: system.applied?.generation,
      })),
    },
  };
}

/** What a refused desired-state record claimed to be (unverified), for the alert. */
export interface RefusedRecord {
  partition: number;
  offset: string;
  messageId?: string;
  commandId?: string;
  generation?: number;
  keyId?: string;
  desiredState?: string;
}

/** Reports a desired-state record the adapter refused to act on. */
export function buildSecurityAlert(
  identity: AdapterIdentity,
  systemId: string,
  refusal: { reason: SecurityAlertReason; severity: SecurityAlertSeverity; detail: string },
  record: RefusedRecord,
  now = new Date(),
): SecurityAlertV1 {
  // What a refused record claims is attacker-controlled: control characters are dropped, lengths capped.
  const clip = (value: unknown, max = 200) => (typeof value === 'string' ? value.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, max) : undefined);
  return {
    ...envelopeHeader(producerOf(identity), now),
    type: ADAPTER_SECURITY_ALERT,
    version: 1,
    data: {
      adapterId: identity.adapterId,
      systemId,
      reason: refusal.reason,
      severity: refusal.severity,
      detail: truncate(refusal.detail),
      record: {
        partition: record.partition,
        offset: record.offset,
        messageId: clip(record.messageId),
        commandId: clip(record.commandId),
        generation: Number.isSafeInteger(record.generation) ? record.generation : undefined,
        keyId: clip(record.keyId),
        desiredState: clip(record.desiredState, 50),
      },
    },
  };
}
