import { Column, Entity, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import type { AccessState } from '@portcullis/contracts';
import { bigintAsNumber } from './bigint.transformer';

export type EnforcementStatus = 'pending' | 'delivered' | 'enforced' | 'failed';
export type TargetStatus = EnforcementStatus | 'superseded';
export type CommandAction = 'revoke' | 'restore';
/** Who may restore a group: a second security lead approves (default), or one admin alone. */
export type RestoreApprovalMode = 'four-eyes' | 'single-admin';
/** Where a restore request stands; `null` on commands that needed no approval. */
export type RestoreRequestStatus = 'awaiting-approval' | 'approved' | 'rejected' | 'expired' | 'superseded';

@Entity('systems')
export class SystemEntity {
  @PrimaryColumn('text') id!: string;
  @Column('text') name!: string;
  @Column('text') kind!: string;
  /** The adapter that enforces this system: the only one whose acknowledgements count, and whose key must sign them. */
  @Column('text', { name: 'adapter_id' }) adapterId!: string;
  @Column('text', { name: 'desired_state' }) desiredState!: AccessState;
  @Column('bigint', { transformer: bigintAsNumber }) generation!: number;
  @Column('uuid', { name: 'desired_command_id', nullable: true }) desiredCommandId!: string | null;
  @Column('bigint', { name: 'enforced_generation', transformer: bigintAsNumber }) enforcedGeneration!: number;
  @Column('text', { name: 'enforcement_status' }) enforcementStatus!: EnforcementStatus;
  @Column('text', { name: 'enforcement_detail', nullable: true }) enforcementDetail!: string | null;
  @Column('text', { name: 'acknowledged_by', nullable: true }) acknowledgedBy!: string | null;
  @Column('timestamptz', { name: 'last_acknowledged_at', nullable: true }) lastAcknowledgedAt!: Date | null;
  @Column('timestamptz', { name: 'last_drift_at', nullable: true }) lastDriftAt!: Date | null;
  @Column('text', { name: 'last_drift_detail', nullable: true }) lastDriftDetail!: string | null;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
}

@Entity('groups')
export class GroupEntity {
  @PrimaryColumn('text') id!: string;
  @Column('text') name!: string;
  @Column('text') state!: AccessState;
  @Column('uuid', { name: 'last_command_id', nullable: true }) lastCommandId!: string | null;
  @Column('text', { name: 'restore_approval' }) restoreApproval!: RestoreApprovalMode;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
}

/** A break-glass principal adapters never touch on a system, until it expires or is removed. */
@Entity('system_exemptions')
export class SystemExemptionEntity {
  @PrimaryColumn('text', { name: 'system_id' }) systemId!: string;
  @PrimaryColumn('text') principal!: string;
  @Column('text') reason!: string;
  @Column('text', { name: 'created_by' }) createdBy!: string;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'expires_at', nullable: true }) expiresAt!: Date | null;
}

@Entity('group_systems')
export class GroupSystemEntity {
  @PrimaryColumn('text', { name: 'group_id' }) groupId!: string;
  @PrimaryColumn('text', { name: 'system_id' }) systemId!: string;
}

@Entity('commands')
export class CommandEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') action!: CommandAction;
  @Column('text', { name: 'group_id' }) groupId!: string;
  @Column('text') reason!: string;
  @Column('text', { name: 'incident_ref', nullable: true }) incidentRef!: string | null;
  @Column('text', { name: 'requested_by' }) requestedBy!: string;
  @Column('timestamptz', { name: 'requested_at' }) requestedAt!: Date;
  @Column('timestamptz', { name: 'acknowledge_by' }) acknowledgeBy!: Date;
  /** `four-eyes` on restore requests, `single-admin` on a restore an admin applied alone, null otherwise. */
  @Column('text', { name: 'approval_mode', nullable: true }) approvalMode?: RestoreApprovalMode | null;
  @Column('text', { name: 'approval_status', nullable: true }) approvalStatus?: RestoreRequestStatus | null;
  @Column('timestamptz', { name: 'approval_expires_at', nullable: true }) approvalExpiresAt?: Date | null;
  /** The group's last decision when the request was made: a request is void once the group moved on. */
  @Column('uuid', { name: 'approval_basis_command_id', nullable: true }) approvalBasisCommandId?: string | null;
  @Column('text', { name: 'decided_by', nullable: true }) decidedBy?: string | null;
  @Column('timestamptz', { name: 'decided_at', nullable: true }) decidedAt?: Date | null;
  /** The approver's comment or the rejection reason. */
  @Column('text', { name: 'decision_comment', nullable: true }) decisionComment?: string | null;
}

@Entity('command_targets')
export class CommandTargetEntity {
  @PrimaryColumn('uuid', { name: 'command_id' }) commandId!: string;
  @PrimaryColumn('text', { name: 'system_id' }) systemId!: string;
  @Column('bigint', { transformer: bigintAsNumber }) generation!: number;
  @Column('text', { name: 'desired_state' }) desiredState!: AccessState;
  /** Whether this command changed the system's effective state (false: it was already in that state). */
  @Column('boolean') changed!: boolean;
  @Column('text') status!: TargetStatus;
  @Column('text', { nullable: true }) detail!: string | null;
  @Column('boolean', { name: 'will_retry', nullable: true }) willRetry!: boolean | null;
  @Column('integer', { name: 'principals_changed', nullable: true }) principalsChanged!: number | null;
  @Column('integer', { name: 'sessions_terminated', nullable: true }) sessionsTerminated!: number | null;
  @Column('text', { name: 'adapter_id', nullable: true }) adapterId!: string | null;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
}

@Entity('acknowledgements')
export class AcknowledgementEntity {
  @PrimaryColumn('uuid', { name: 'message_id' }) messageId!: string;
  @Column('uuid', { name: 'command_id' }) commandId!: string;
  @Column('text', { name: 'system_id' }) systemId!: string;
  @Column('bigint', { transformer: bigintAsNumber }) generation!: number;
  @Column('text', { name: 'adapter_id' }) adapterId!: string;
  @Column('text') status!: string;
  @Column('boolean') accepted!: boolean;
  @Column('text', { name: 'rejection_reason', nullable: true }) rejectionReason!: string | null;
  @Column('timestamptz', { name: 'occurred_at' }) occurredAt!: Date;
  @Column('timestamptz', { name: 'received_at' }) receivedAt!: Date;
  @Column('jsonb') payload!: unknown;
}

@Entity('outbox')
export class OutboxMessageEntity {
  @PrimaryGeneratedColumn('increment', { type: 'bigint' }) id!: string;
  @Column('text') topic!: string;
  @Column('text', { name: 'message_key' }) messageKey!: string;
  /** Routes the record to this route's partition instead of its key's (decisions: the adapter id). */
  @Column('text', { name: 'partition_key', nullable: true }) partitionKey!: string | null;
  @Column('text') payload!: string;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'published_at', nullable: true }) publishedAt!: Date | null;
}

/** One entry of the audit trail, a link of its hash chain (see audit/audit-chain.ts). Written only by `AuditLog.append`. */
@Entity('audit_entries')
export class AuditEntryEntity {
  @PrimaryGeneratedColumn('increment', { type: 'bigint' }) id!: string;
  /** Position in the chain: 1, 2, 3, ... without gaps, in commit order. */
  @Column('bigint', { transformer: bigintAsNumber }) seq!: number;
  @Column('timestamptz', { name: 'occurred_at' }) occurredAt!: Date;
  @Column('text') actor!: string;
  @Column('text') action!: string;
  @Column('text', { name: 'group_id', nullable: true }) groupId!: string | null;
  @Column('text', { name: 'system_id', nullable: true }) systemId!: string | null;
  @Column('uuid', { name: 'command_id', nullable: true }) commandId!: string | null;
  @Column('text', { nullable: true }) reason!: string | null;
  @Column('text', { name: 'incident_ref', nullable: true }) incidentRef!: string | null;
  @Column('text', { name: 'source_address', nullable: true }) sourceAddress!: string | null;
  @Column('jsonb') details!: Record<string, unknown>;
  @Column('text', { name: 'prev_hash' }) prevHash!: string;
  @Column('text') hash!: string;
}

@Entity('adapters')
export class AdapterEntity {
  @PrimaryColumn('text') id!: string;
  @Column('text') kind!: string;
  @Column('text', { name: 'instance_id' }) instanceId!: string;
  @Column('timestamptz', { name: 'started_at' }) startedAt!: Date;
  @Column('integer', { name: 'interval_ms' }) intervalMs!: number;
  @Column('timestamptz', { name: 'last_seen_at' }) lastSeenAt!: Date;
  @Column('jsonb') systems!: { systemId: string; desiredState?: AccessState; desiredGeneration?: number; enforcedGeneration?: number }[];
  /** From the last heartbeat: whether the adapter can store decisions; null when it does not say. */
  @Column('jsonb', { name: 'state_store', nullable: true }) stateStore!: { status: 'ok' | 'failed'; error?: string } | null;
}

/** A public key an adapter signs its reports with; revoked keys stay, as evidence of what was trusted when. */
@Entity('adapter_keys')
export class AdapterKeyEntity {
  @PrimaryColumn('text', { name: 'adapter_id' }) adapterId!: string;
  @PrimaryColumn('text', { name: 'key_id' }) keyId!: string;
  @Column('text', { name: 'public_key' }) publicKey!: string;
  @Column('text') fingerprint!: string;
  @Column('text', { name: 'registered_by' }) registeredBy!: string;
  @Column('timestamptz', { name: 'registered_at' }) registeredAt!: Date;
  @Column('timestamptz', { name: 'revoked_at', nullable: true }) revokedAt!: Date | null;
  @Column('text', { name: 'revoked_by', nullable: true }) revokedBy!: string | null;
}

/** A message an adapter refused (forged, replayed, rolled back, ...), as it reported it. */
@Entity('security_alerts')
export class SecurityAlertEntity {
  @PrimaryColumn('uuid', { name: 'message_id' }) messageId!: string;
  @Column('text', { name: 'adapter_id' }) adapterId!: string;
  @Column('text', { name: 'system_id' }) systemId!: string;
  @Column('text') reason!: string;
  @Column('text') severity!: string;
  /** Whether the report itself was signed by a registered key of that adapter. */
  @Column('boolean') verified!: boolean;
  @Column('text') detail!: string;
  @Column('timestamptz', { name: 'occurred_at' }) occurredAt!: Date;
  @Column('timestamptz', { name: 'received_at' }) receivedAt!: Date;
  @Column('jsonb') payload!: unknown;
  /** What the service knows about the refused record, e.g. that it sent that message more than once itself (null: nothing). */
  @Column('text', { nullable: true }) explanation!: string | null;
}

/** An API key for automation: only the SHA-256 of the key is stored; revoked keys stay, as evidence. */
@Entity('api_keys')
export class ApiKeyEntity {
  @PrimaryColumn('text') id!: string;
  @Column('text') name!: string;
  @Column('text', { array: true }) roles!: string[];
  @Column('bytea', { name: 'secret_hash' }) secretHash!: Buffer;
  @Column('text', { name: 'created_by' }) createdBy!: string;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'expires_at', nullable: true }) expiresAt!: Date | null;
  @Column('timestamptz', { name: 'revoked_at', nullable: true }) revokedAt!: Date | null;
  @Column('text', { name: 'revoked_by', nullable: true }) revokedBy!: string | null;
  @Column('timestamptz', { name: 'last_used_at', nullable: true }) lastUsedAt!: Date | null;
  @Column('text', { name: 'last_used_from', nullable: true }) lastUsedFrom!: string | null;
}

export const policyServiceEntities = [
  AdapterKeyEntity,
  SecurityAlertEntity,
  SystemEntity,
  GroupEntity,
  GroupSystemEntity,
  SystemExemptionEntity,
  CommandEntity,
  CommandTargetEntity,
  AcknowledgementEntity,
  OutboxMessageEntity,
  AuditEntryEntity,
  AdapterEntity,
  ApiKeyEntity,
];
