import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import {
  encodeMessage,
  envelopeHeader,
  SYSTEM_ACCESS_CHANGED,
  SystemAccessChangedV1Schema,
  Topics,
  type SystemAccessChangedV1,
} from '@portcullis/contracts';
import { randomUUID } from 'node:crypto';
import { DataSource, In, type EntityManager } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import {
  CommandEntity,
  CommandTargetEntity,
  GroupEntity,
  GroupSystemEntity,
  SystemEntity,
  type CommandAction,
  type TargetStatus,
} from '../database/entities';
import { NotFoundError } from '../errors/domain.errors';
import { OutboxWriter, type OutboxMessage } from '../outbox/outbox.writer';
import { decideSystemAccess } from './access-decision';
import { CommandsService, type CommandView } from './commands.service';

export const POLICY_SERVICE_PRODUCER = 'policy-service';

/** A decision about a group, as a security lead makes it. */
export interface GroupDecision {
  action: CommandAction;
  groupId: string;
  reason: string;
  incidentRef?: string;
  /** The authenticated subject. */
  requestedBy: string;
}

export interface GroupDecisionOutcome {
  /** False when the group already was in the requested state: nothing new was decided or published. */
  accepted: boolean;
  command: CommandView | null;
}

/**
 * Turns a revoke or restore of a group into per-system decisions. In ONE transaction it records the
 * command, each system's new desired state and generation, the audit entry and the outgoing events
 * (transactional outbox), so that a decision is never half made nor made without being published.
 */
@Injectable()
export class GroupDecisionsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
    private readonly outbox: OutboxWriter,
    private readonly commands: CommandsService,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  async decide(decision: GroupDecision): Promise<GroupDecisionOutcome> {
    const recorded = await this.dataSource.transaction('READ COMMITTED', (manager) => this.record(manager, decision));
    return { accepted: recorded.accepted, command: recorded.commandId ? await this.commands.get(recorded.commandId) : null };
  }

  private async record(manager: EntityManager, decision: GroupDecision): Promise<{ accepted: boolean; commandId: string | null }> {
    const actor = `user:${decision.requestedBy}`;
    // Lock order everywhere: the group row, then its systems by id. Concurrent decisions on groups that
    // share systems are serialised on those systems and each sees the other's committed result.
    const group = await manager.findOne(GroupEntity, { where: { id: decision.groupId }, lock: { mode: 'pessimistic_write' } });
    if (!group) throw new NotFoundError('group', decision.groupId);

    const targetState = decision.action === 'revoke' ? 'revoked' : 'active';
    if (group.state === targetState) {
      await this.auditLog.append(manager, {
        actor,
        action: `group.${decision.action}.repeated`,
        groupId: group.id,
        commandId: group.lastCommandId,
        reason: decision.reason,
        incidentRef: decision.incidentRef,
        details: { note: `group was already ${group.state}; nothing was published` },
      });
      return { accepted: false, commandId: group.lastCommandId };
    }

    const memberIds = (await manager.find(GroupSystemEntity, { where: { groupId: group.id } }))
      .map((member) => member.systemId)
      .sort();
    const systems = memberIds.length
      ? await manager.find(SystemEntity, {
          where: { id: In(memberIds) },
          order: { id: 'ASC' },
          lock: { mode: 'pessimistic_write' },
        })
      : [];
    const otherRevokedGroups = await this.otherRevokedGroups(manager, group.id, memberIds);

    const now = new Date();
    const acknowledgeBy = new Date(now.getTime() + this.config.acknowledgementDeadlineSeconds * 1000);
    const command: CommandEntity = {
      id: randomUUID(),
      action: decision.action,
      groupId: group.id,
      reason: decision.reason,
      incidentRef: decision.incidentRef ?? null,
      requestedBy: decision.requestedBy,
      requestedAt: now,
      acknowledgeBy,
    };
    await manager.insert(CommandEntity, command);
    await manager.query('UPDATE groups SET state = $2, last_command_id = $3, updated_at = now() WHERE id = $1', [
      group.id,
      targetState,
      command.id,
    ]);

    const targets: Partial<CommandTargetEntity>[] = [];
    const messages: OutboxMessage[] = [];
    const changed: string[] = [];
    const unchanged: { systemId: string; desiredState: string; heldBy: string[] }[] = [];
    const changes: { id: string; desiredState: string; generation: number }[] = [];
    for (const system of systems) {
      const access = decideSystemAccess(decision.action, system.desiredState, otherRevokedGroups.get(system.id) ?? []);
      if (!access.changes) {
        // Already in the desired state through another decision: follow that decision's enforcement.
        targets.push({
          commandId: command.id,
          systemId: system.id,
          generation: system.generation,
          desiredState: system.desiredState,
          changed: false,
          status: currentEnforcement(system),
          detail: access.heldBy.length
            ? `stays ${system.desiredState}: also covered by revoked group(s) ${access.heldBy.join(', ')}`
            : `already ${system.desiredState}`,
        });
        unchanged.push({ systemId: system.id, desiredState: system.desiredState, heldBy: access.heldBy });
        continue;
      }
      const generation = system.generation + 1;
      changes.push({ id: system.id, desiredState: access.desiredState, generation });
      targets.push({
        commandId: command.id,
        systemId: system.id,
        generation,
        desiredState: access.desiredState,
        changed: true,
        status: 'pending',
        detail: null,
      });
      messages.push(this.systemAccessChanged(command, system, generation, access.desiredState));
      changed.push(system.id);
    }
    if (changes.length) {
      // Set-based: two statements for the whole group instead of two per system.
      await manager.query(
        `UPDATE systems s SET desired_state = u.desired_state, generation = u.generation, desired_command_id = $1,
           enforcement_status = 'pending', enforcement_detail = NULL, updated_at = now()
         FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(id, desired_state, generation) WHERE s.id = u.id`,
        [command.id, changes.map((c) => c.id), changes.map((c) => c.desiredState), changes.map((c) => c.generation)],
      );
      // Older decisions still waiting on these systems will never be acknowledged as such: a newer one replaces them.
      await manager.query(
        `UPDATE command_targets ct SET status = 'superseded', updated_at = now()
         FROM unnest($1::text[], $2::bigint[]) AS u(system_id, generation)
         WHERE ct.system_id = u.system_id AND ct.generation < u.generation AND ct.status IN ('pending', 'delivered', 'failed')`,
        [changes.map((c) => c.id), changes.map((c) => c.generation)],
      );
    }
    if (targets.length) await manager.insert(CommandTargetEntity, targets);
    await this.auditLog.append(manager, {
      actor,
      action: decision.action === 'revoke' ? 'group.revoked' : 'group.restored',
      groupId: group.id,
      commandId: command.id,
      reason: decision.reason,
      incidentRef: decision.incidentRef,
      details: {
        before: { state: group.state },
        after: { state: targetState },
        systemsChanged: changed,
        systemsUnchanged: unchanged,
        acknowledgeBy: acknowledgeBy.toISOString(),
      },
    });
    await this.outbox.enqueue(manager, messages);
    return { accepted: true, commandId: command.id };
  }

  /** For each system, the other revoked groups that contain it. */
  private async otherRevokedGroups(manager: EntityManager, groupId: string, systemIds: string[]): Promise<Map<string, string[]>> {
    if (systemIds.length === 0) return new Map();
    const rows: { system_id: string; group_ids: string[] }[] = await manager.query(
      `SELECT gs.system_id, array_agg(g.id ORDER BY g.id) AS group_ids
       FROM group_systems gs JOIN groups g ON g.id = gs.group_id
       WHERE g.state = 'revoked' AND g.id <> $1 AND gs.system_id = ANY($2::text[])
       GROUP BY gs.system_id`,
      [groupId, systemIds],
    );
    return new Map(rows.map((row) => [row.system_id, row.group_ids]));
  }

  private systemAccessChanged(
    command: CommandEntity,
    system: SystemEntity,
    generation: number,
    desiredState: 'active' | 'revoked',
  ): OutboxMessage {
    const message: SystemAccessChangedV1 = {
      ...envelopeHeader(POLICY_SERVICE_PRODUCER, command.requestedAt),
      type: SYSTEM_ACCESS_CHANGED,
      version: 1,
      commandId: command.id,
      generation,
      data: {
        systemId: system.id,
        systemKind: system.kind,
        desiredState,
        groupId: command.groupId,
        action: command.action,
        reason: command.reason,
        incidentRef: command.incidentRef ?? undefined,
        requestedBy: command.requestedBy,
        exemptPrincipals: system.exemptPrincipals,
        acknowledgeBy: command.acknowledgeBy.toISOString(),
      },
    };
    return { topic: Topics.systemAccess, key: system.id, value: encodeMessage(SystemAccessChangedV1Schema, message) };
  }
}

function currentEnforcement(system: SystemEntity): TargetStatus {
  return system.enforcedGeneration >= system.generation ? 'enforced' : system.enforcementStatus;
}
