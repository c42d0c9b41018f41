import { Column, Entity, PrimaryColumn, PrimaryGeneratedColumn } from 'typeorm';
import type { AccessState } from '@portcullis/contracts';
import { bigintAsNumber } from './bigint.transformer';

export type EnforcementStatus = 'pending' | 'delivered' | 'enforced' | 'failed';
export type TargetStatus = EnforcementStatus | 'superseded';
export type CommandAction = 'revoke' | 'restore';

@Entity('systems')
export class SystemEntity {
  @PrimaryColumn('text') id!: string;
  @Column('text') name!: string;
  @Column('text') kind!: string;
  @Column('text', { name: 'exempt_principals', array: true }) exemptPrincipals!: string[];
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
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'updated_at' }) updatedAt!: Date;
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
  @Column('text') payload!: string;
  @Column('timestamptz', { name: 'created_at' }) createdAt!: Date;
  @Column('timestamptz', { name: 'published_at', nullable: true }) publishedAt!: Date | null;
}

@Entity('audit_entries')
export class AuditEntryEntity {
  @PrimaryGeneratedColumn('increment', { type: 'bigint' }) id!: string;
  @Column('timestamptz', { name: 'occurred_at' }) occurredAt!: Date;
  @Column('text') actor!: string;
  @Column('text') action!: string;
  @Column('text', { name: 'group_id', nullable: true }) groupId!: string | null;
  @Column('text', { name: 'system_id', nullable: true }) systemId!: string | null;
  @Column('uuid', { name: 'command_id', nullable: true }) commandId!: string | null;
  @Column('text', { nullable: true }) reason!: string | null;
  @Column('text', { name: 'incident_ref', nullable: true }) incidentRef!: string | null;
  @Column('jsonb') details!: Record<string, unknown>;
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
}

export const policyServiceEntities = [
  SystemEntity,
  GroupEntity,
  GroupSystemEntity,
  CommandEntity,
  CommandTargetEntity,
  AcknowledgementEntity,
  OutboxMessageEntity,
  AuditEntryEntity,
  AdapterEntity,
];
