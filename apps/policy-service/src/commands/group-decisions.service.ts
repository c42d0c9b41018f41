import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, type EntityManager } from 'typeorm';
import { AuditLog, type AuditEntryInput } from '../audit/audit-log.service';
import type { Role } from '../auth/roles';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import type { AccessState } from '@portcullis/contracts';
import {
  CommandEntity,
  CommandTargetEntity,
  GroupEntity,
  SystemEntity,
  type CommandAction,
  type TargetStatus,
} from '../database/entities';
import { NotFoundError } from '../errors/domain.errors';
import { SystemAccessMessageFactory } from '../desired-state/system-access-message.factory';
import { outboxInsert, type OutboxMessage } from '../outbox/outbox.writer';
import { VALID_EXEMPTIONS_SQL } from '../systems/exemptions';
import { decideSystemAccess } from './access-decision';
import { ForbiddenActionError, RequestConflictError } from './approval.errors';
import { commandView, CommandsService, type CommandView } from './commands.service';
import { effectiveRequestStatus, judgeDecision, restoreRoute, type RestoreRequestFacts } from './restore-approval';

export { POLICY_SERVICE_PRODUCER } from '../desired-state/system-access-message.factory';

/** A decision about a group, as a security lead makes it. */
export interface GroupDecision {
  action: CommandAction;
  groupId: string;
  reason: string;
  incidentRef?: string;
  /** The authenticated subject. */
  requestedBy: string;
  /** The requester's roles: whether a restore applies at once or waits for approval depends on them. */
  roles?: readonly Role[];
  /** The client address of the HTTP request, for the audit history. */
  sourceAddress?: string | null;
}

export interface GroupDecisionOutcome {
  /** False when the group already was in the requested state: nothing new was decided or published. */
  accepted: boolean;
  /** A restore request waiting for a second security lead: nothing was applied or published yet. */
  awaitingApproval: boolean;
  command: CommandView | null;
}

/** A security lead's answer to a restore request. */
export interface RequestDecision {
  commandId: string;
  /** The authenticated subject approving or rejecting. */
  decidedBy: string;
  /** Approval: an optional comment. Rejection: the reason (required). */
  comment?: string;
  sourceAddress?: string | null;
}

/** One group of a bulk revoke: its command, or the group's last command if it was revoked already. */
export interface BulkRevokeOutcome {
  groupId: string;
  commandId: string | null;
  accepted: boolean;
}

interface Recorded {
  accepted: boolean;
  awaitingApproval: boolean;
  commandId: string | null;
  /** The command as this transaction wrote it, with its targets; absent when it wrote none (a repeat). */
  written?: WrittenCommand;
}

/** A command and its targets exactly as a transaction wrote them: the answer's view needs no re-read. */
interface WrittenCommand {
  command: CommandEntity;
  targets: CommandTargetEntity[];
}

/** How one decision is recorded besides its command: who applies it and what the audit history says. */
interface Application {
  actor: string;
  sourceAddress: string | null;
  /** Audit entries that come before the decision's own `group.revoked` / `group.restored` entry. */
  precedingEntries: AuditEntryInput[];
  /** Added to the decision entry's details. */
  details: Record<string, unknown>;
}

/**
 * Turns a revoke or restore of a group into per-system decisions. In ONE transaction it records the
 * command, each system's new desired state and generation, the outgoing events (transactional outbox)
 * and the audit entries, so that a decision is never half made nor made without being published.
 *
 * Restores need four eyes (see restore-approval.ts): a security lead's restore is a request; it is applied,
 * exactly as a direct decision, in the transaction of a different security lead's approval.
 *
 * Lock order everywhere: the group row, then restore requests (command rows) of that group, then the
 * group's systems by id. The audit entries are linked into the hash chain when the transaction commits.
 */
@Injectable()
export class GroupDecisionsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
    private readonly commands: CommandsService,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
    private readonly messages: SystemAccessMessageFactory,
  ) {}

  async decide(decision: GroupDecision): Promise<GroupDecisionOutcome> {
    const recorded = await this.dataSource.transaction((manager) => this.record(manager, decision));
    // The view of what was just committed, from the transaction's own rows (a repeat names an older command: read).
    const command = recorded.written
      ? commandView(recorded.written.command, recorded.written.targets, new Date())
      : recorded.commandId
        ? await this.commands.get(recorded.commandId)
        : null;
    return { accepted: recorded.accepted, awaitingApproval: recorded.awaitingApproval, command };
  }

  /**
   * A different security lead approves a restore request: the restore is applied now, in this transaction,
   * exactly as a direct restore. Refused (409) when the request is not open any more — decided, expired or
   * superseded (the last two are recorded as such first) — and (403) for the requester themselves.
   */
  async approve(input: RequestDecision): Promise<CommandView> {
    const written = await this.answer('approve', input);
    return commandView(written.command, written.targets, new Date());
  }

  /** Closes a restore request without applying it. The requester may withdraw their own request this way. */
  async reject(input: RequestDecision): Promise<CommandView> {
    const written = await this.answer('reject', input);
    return commandView(written.command, written.targets, new Date());
  }

  /**
   * Revokes many groups at once — "everything in scope", in an incident — in ONE transaction: all of them
   * or none (an unknown group is a 404 before anything is written). Each group is decided exactly as a
   * single revoke (its own command, targets, outbox messages, audit entries); a group already revoked is
   * recorded as a repeated revoke. Lock order: the groups by id, then every member system by id, before
   * any decision — the order single decisions and acknowledgement batches use — and the audit entries of
   * all the groups appended once.
   */
  async revokeMany(input: Omit<GroupDecision, 'action' | 'groupId' | 'roles'> & { groupIds: readonly string[] }): Promise<BulkRevokeOutcome[]> {
    const groupIds = [...new Set(input.groupIds)].sort();
    const actor = `user:${input.requestedBy}`;
    const sourceAddress = input.sourceAddress ?? null;
    return this.dataSource.transaction(async (manager) => {
      const now = new Date();
      // Lock order as for a single decision: the groups (by id), their open restore requests, their systems (by id).
      const groups = await manager
        .getRepository(GroupEntity)
        .createQueryBuilder('grp')
        .where('grp.id = ANY(:groupIds)', { groupIds })
        .orderBy('grp.id', 'ASC')
        .setLock('pessimistic_write')
        .getMany();
      const missing = groupIds.find((id) => !groups.some((group) => group.id === id));
      if (missing) throw new NotFoundError('group', missing);
      const openRequests = await manager
        .getRepository(CommandEntity)
        .createQueryBuilder('request')
        .where('request.groupId = ANY(:groupIds) AND request.approvalStatus = :open', { groupIds, open: 'awaiting-approval' })
        .orderBy('request.id', 'ASC')
        .setLock('pessimistic_write')
        .getMany();
      const context = await this.loadDecisionContext(manager, groupIds, now);

      // Every group decided in memory, in id order, exactly as a single revoke would be one after the other
      // (a later group sees the systems an earlier one revoked); then everything written set-based.
      const entries: AuditEntryInput[] = [];
      const outcomes: BulkRevokeOutcome[] = [];
      const closes: { request: CommandEntity; status: 'expired' | 'superseded' }[] = [];
      const plans: DecisionPlan[] = [];
      for (const group of groups) {
        const open = openRequests.find((request) => request.groupId === group.id);
        const closeOpen = (by: string): AuditEntryInput[] => {
          if (!open) return [];
          const { status, cause } = closingOf(open, now, { actor, sourceAddress, by });
          closes.push({ request: open, status });
          return [closedRequestEntry(open, status, cause)];
        };
        if (group.state === 'revoked') {
          entries.push(...closeOpen('a repeated revoke'), repeatedDecisionEntry(group, 'revoke', { ...input, actor, sourceAddress }));
          outcomes.push({ groupId: group.id, commandId: group.lastCommandId, accepted: false });
          continue;
        }
        const command = this.newCommand({ ...input, action: 'revoke', groupId: group.id }, now);
        const closed = closeOpen(`revoke ${command.id}`);
        const plan = this.planApplication(group, { command, write: 'insert' }, now, { actor, sourceAddress, precedingEntries: closed, details: {} }, context);
        plans.push(plan);
        entries.push(...plan.entries);
        outcomes.push({ groupId: group.id, commandId: command.id, accepted: true });
      }
      if (closes.length) {
        await manager.query(
          `UPDATE commands c SET approval_status = u.status, decided_at = $1
           FROM unnest($2::uuid[], $3::text[]) AS u(id, status) WHERE c.id = u.id`,
          [now, closes.map((close) => close.request.id), closes.map((close) => close.status)],
        );
      }
      // The new commands are written with their decisions (writeApplications).
      await this.writeApplications(manager, plans);
      await this.auditLog.append(manager, entries);
      return outcomes;
    });
  }

  /**
   * Records one decision and its audit entries.
   */
  private async record(manager: EntityManager, decision: GroupDecision): Promise<Recorded> {
    const audit = (entries: AuditEntryInput[]) => this.auditLog.append(manager, entries);
    const actor = `user:${decision.requestedBy}`;
    const sourceAddress = decision.sourceAddress ?? null;
    const now = new Date();
    // Concurrent decisions on groups that share systems are serialised on those systems and each sees the
    // other's committed result; decisions and approvals on one group are serialised on the group row.
    const group = await manager.findOne(GroupEntity, { where: { id: decision.groupId }, lock: { mode: 'pessimistic_write' } });
    if (!group) throw new NotFoundError('group', decision.groupId);

    const targetState = decision.action === 'revoke' ? 'revoked' : 'active';
    if (group.state === targetState) {
      // A revoke, even one that changes nothing, says the group must stay revoked: an open restore request
      // made before it is void.
      const closed =
        decision.action === 'revoke'
          ? await this.closeOpenRequest(manager, group, now, { actor, sourceAddress, by: 'a repeated revoke' })
          : [];
      await audit([...closed, repeatedDecisionEntry(group, decision.action, { ...decision, actor, sourceAddress })]);
      return { accepted: false, awaitingApproval: false, commandId: group.lastCommandId };
    }

    const command = this.newCommand(decision, now);

    if (decision.action === 'revoke') {
      const closed = await this.closeOpenRequest(manager, group, now, { actor, sourceAddress, by: `revoke ${command.id}` });
      const targets = await this.apply(manager, group, { command, write: 'insert' }, now, { actor, sourceAddress, precedingEntries: closed, details: {} });
      return { accepted: true, awaitingApproval: false, commandId: command.id, written: { command, targets } };
    }

    const route = restoreRoute(group.restoreApproval, decision.roles ?? ['security-lead']);
    if (route === 'forbidden') {
      throw new ForbiddenActionError(
        'restore_needs_security_lead',
        `group "${group.id}" is restored with four eyes: a security lead requests it and another approves it; ` +
          'single-person restore by an admin is not enabled for this group',
      );
    }
    if (route === 'apply-now') {
      const closed = await this.closeOpenRequest(manager, group, now, { actor, sourceAddress, by: `single-admin restore ${command.id}` });
      const singleAdmin: CommandEntity = { ...command, approvalMode: 'single-admin' };
      const targets = await this.apply(manager, group, { command: singleAdmin, write: 'insert' }, now, {
        actor,
        sourceAddress,
        precedingEntries: closed,
        details: {
          approval: 'single-admin',
          note: 'single-person restore by an admin: the group allows it (restoreApproval = single-admin)',
        },
      });
      return { accepted: true, awaitingApproval: false, commandId: command.id, written: { command: singleAdmin, targets } };
    }

    // Four eyes: record the request only. Nothing changes on any system until another security lead approves.
    const entries: AuditEntryInput[] = [];
    const open = await manager.findOne(CommandEntity, {
      where: { groupId: group.id, approvalStatus: 'awaiting-approval' },
      lock: { mode: 'pessimistic_write' },
    });
    if (open) {
      if (effectiveRequestStatus(requestFacts(open), now) !== 'expired') {
        throw new RequestConflictError(
          'restore_request_open',
          `group "${group.id}" already has an open restore request ${open.id} (requested by ${open.requestedBy}, ` +
            `expires ${open.approvalExpiresAt!.toISOString()}): approve or reject it first`,
        );
      }
      entries.push(await this.close(manager, open, 'expired', now, { actor: 'system', sourceAddress: null, by: `a new restore request by ${actor}` }));
    }
    const expiresAt = new Date(now.getTime() + this.config.restoreRequestTtlSeconds * 1000);
    const request: CommandEntity = {
      ...command,
      // Not applied yet: the acknowledgement deadline is set when it is approved.
      acknowledgeBy: expiresAt,
      approvalMode: 'four-eyes',
      approvalStatus: 'awaiting-approval',
      approvalExpiresAt: expiresAt,
      approvalBasisCommandId: group.lastCommandId,
    };
    await manager.insert(CommandEntity, request);
    entries.push({
      actor,
      sourceAddress,
      action: 'restore.requested',
      groupId: group.id,
      commandId: command.id,
      reason: decision.reason,
      incidentRef: decision.incidentRef,
      details: {
        before: { state: group.state, approval: null },
        after: { state: group.state, approval: 'awaiting-approval' },
        approval: 'four-eyes',
        expiresAt: expiresAt.toISOString(),
        basisCommandId: group.lastCommandId,
      },
    });
    await audit(entries);
    // A request has no targets until it is approved.
    return { accepted: true, awaitingApproval: true, commandId: command.id, written: { command: request, targets: [] } };
  }

  private async answer(kind: 'approve' | 'reject', input: RequestDecision): Promise<WrittenCommand> {
    // A refusal that records something (expired, superseded) is committed first, then reported.
    const outcome = await this.dataSource.transaction(async (manager): Promise<Error | WrittenCommand> => {
      const now = new Date();
      const actor = `user:${input.decidedBy}`;
      const sourceAddress = input.sourceAddress ?? null;
      // Same lock order as decisions: the group (found through the command), then the request. Two
      // approvers racing are serialised here; the second one finds the request approved already.
      const group = await manager
        .createQueryBuilder(GroupEntity, 'group')
        .where('group.id = (SELECT c.group_id FROM commands c WHERE c.id = :id)', { id: input.commandId })
        .setLock('pessimistic_write')
        .getOne();
      const request = group && (await manager.findOne(CommandEntity, { where: { id: input.commandId }, lock: { mode: 'pessimistic_write' } }));
      if (!group || !request) throw new NotFoundError('command', input.commandId);
      if (request.action !== 'restore' || !request.approvalStatus) {
        throw new RequestConflictError(
          'not_a_restore_request',
          `command ${request.id} is a ${request.action}${request.action === 'restore' ? ' that needed no approval' : ''}; ` +
            'only restore requests are approved or rejected',
        );
      }
      const facts = requestFacts(request);
      const verdict = judgeDecision(kind, facts, input.decidedBy, group, now);
      if (!verdict.ok) {
        switch (verdict.refusal) {
          case 'closed':
            // Same code whether the request was closed just now or earlier: clients see one answer per state.
            throw new RequestConflictError(
              verdict.status === 'expired' || verdict.status === 'superseded' ? `request_${verdict.status}` : 'request_closed',
              `restore request ${request.id} is ${verdict.status} already` +
                (request.decidedBy ? ` (by ${request.decidedBy} at ${request.decidedAt?.toISOString()})` : '') +
                (verdict.status === 'superseded' ? ': the group was decided again since it was made' : '') +
                '; nothing was changed',
            );
          case 'own-request':
            throw new ForbiddenActionError(
              'own_request',
              `four eyes: ${input.decidedBy} requested this restore and cannot approve it; another security lead must`,
            );
          case 'expired':
            await this.auditLog.append(
              manager,
              await this.close(manager, request, 'expired', now, { actor: 'system', sourceAddress: null, by: `the ${kind} by ${actor}` }),
            );
            return new RequestConflictError(
              'request_expired',
              `restore request ${request.id} expired at ${facts.approvalExpiresAt.toISOString()} without approval; request the restore again`,
            );
          case 'superseded':
            await this.auditLog.append(
              manager,
              await this.close(manager, request, 'superseded', now, {
                actor: 'system',
                sourceAddress: null,
                by: `the ${kind} by ${actor}`,
                why: verdict.why,
              }),
            );
            return new RequestConflictError(
              'request_superseded',
              `restore request ${request.id} is superseded: ${verdict.why}; nothing was changed`,
            );
        }
      }

      const decidedFields = { decidedBy: input.decidedBy, decidedAt: now, decisionComment: input.comment ?? null };
      if (kind === 'reject') {
        await manager.update(CommandEntity, { id: request.id }, { approvalStatus: 'rejected', ...decidedFields });
        await this.auditLog.append(manager, {
          actor,
          sourceAddress,
          action: 'restore.rejected',
          groupId: group.id,
          commandId: request.id,
          reason: input.comment ?? null,
          incidentRef: request.incidentRef,
          details: {
            before: { approval: 'awaiting-approval' },
            after: { approval: 'rejected' },
            requestedBy: request.requestedBy,
            requestReason: request.reason,
            withdrawnByRequester: input.decidedBy === request.requestedBy,
          },
        });
        return { command: { ...request, approvalStatus: 'rejected', ...decidedFields }, targets: [] };
      }

      // Approved: from here on it is the restore decision, made now.
      const acknowledgeBy = new Date(now.getTime() + this.config.acknowledgementDeadlineSeconds * 1000);
      const command: CommandEntity = { ...request, approvalStatus: 'approved', acknowledgeBy, ...decidedFields };
      const targets = await this.apply(manager, group, { command, write: 'approve' }, now, {
        actor,
        sourceAddress,
        precedingEntries: [
          {
            actor,
            sourceAddress,
            action: 'restore.approved',
            groupId: group.id,
            commandId: request.id,
            reason: request.reason,
            incidentRef: request.incidentRef,
            details: {
              before: { approval: 'awaiting-approval' },
              after: { approval: 'approved' },
              requestedBy: request.requestedBy,
              requestedAt: request.requestedAt.toISOString(),
              comment: input.comment ?? null,
            },
          },
        ],
        details: { approval: 'four-eyes', requestedBy: request.requestedBy, approvedBy: input.decidedBy },
      });
      return { command, targets };
    });
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /** A new command for a decision, requested now. */
  private newCommand(decision: Pick<GroupDecision, 'action' | 'groupId' | 'reason' | 'incidentRef' | 'requestedBy'>, now: Date): CommandEntity {
    return {
      id: randomUUID(),
      action: decision.action,
      groupId: decision.groupId,
      reason: decision.reason,
      incidentRef: decision.incidentRef ?? null,
      requestedBy: decision.requestedBy,
      requestedAt: now,
      acknowledgeBy: new Date(now.getTime() + this.config.acknowledgementDeadlineSeconds * 1000),
    };
  }

  /**
   * The group's decision applied to each of its systems: its command, group state, systems' desired state and
   * generation, command targets, outbox messages, then the audit entries (last).
   */
  private async apply(
    manager: EntityManager,
    group: GroupEntity,
    decided: DecidedCommand,
    now: Date,
    how: Application,
  ): Promise<CommandTargetEntity[]> {
    const context = await this.loadDecisionContext(manager, [group.id], now);
    const plan = this.planApplication(group, decided, now, how, context);
    const writtenAt = await this.writeApplications(manager, [plan]);
    await this.auditLog.append(manager, plan.entries);
    return plan.targets.map((target) => writtenTarget(target, writtenAt));
  }

  /**
   * What decisions about `groupIds` need to read, read once: their systems, locked in id order (the order
   * every transaction locks systems in), every group each of those systems is in with its state, and the
   * systems' valid exemptions (read after the lock: an exemption removed meanwhile waits for this decision,
   * which locks the system too, so what is published is what is valid now).
   */
  private async loadDecisionContext(manager: EntityManager, groupIds: readonly string[], now: Date): Promise<DecisionContext> {
    const systems = await manager
      .getRepository(SystemEntity)
      .createQueryBuilder('system')
      .where('system.id IN (SELECT gs.system_id FROM group_systems gs WHERE gs.group_id = ANY(:groupIds))', { groupIds })
      .orderBy('system.id', 'ASC')
      .setLock('pessimistic_write', undefined, ['system'])
      .getMany();
    const systemIds = systems.map((system) => system.id);
    // Both read after the lock, in one round trip.
    const [related]: { memberships: { group_id: string; system_id: string; state: string }[]; exemptions: { system_id: string; principals: string[] }[] }[] =
      systemIds.length
        ? await manager.query(
            `SELECT
               (SELECT coalesce(json_agg(m), '[]') FROM (
                  SELECT gs.group_id, gs.system_id, g.state FROM group_systems gs JOIN groups g ON g.id = gs.group_id
                  WHERE gs.system_id = ANY($1::text[])) m) AS memberships,
               (SELECT coalesce(json_agg(e), '[]') FROM (${VALID_EXEMPTIONS_SQL}) e) AS exemptions`,
            [systemIds, now],
          )
        : [{ memberships: [], exemptions: [] }];
    const byId = new Map(systems.map((system) => [system.id, system]));
    const systemsOfGroup = new Map<string, SystemEntity[]>();
    const groupsOfSystem = new Map<string, string[]>();
    const revokedGroups = new Set<string>();
    const decided = new Set(groupIds);
    for (const row of related.memberships) {
      if (row.state === 'revoked') revokedGroups.add(row.group_id);
      groupsOfSystem.set(row.system_id, [...(groupsOfSystem.get(row.system_id) ?? []), row.group_id]);
      if (decided.has(row.group_id)) systemsOfGroup.set(row.group_id, [...(systemsOfGroup.get(row.group_id) ?? []), byId.get(row.system_id)!]);
    }
    for (const members of systemsOfGroup.values()) members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { systemsOfGroup, groupsOfSystem, revokedGroups, exemptions: new Map(related.exemptions.map((row) => [row.system_id, row.principals])) };
  }

  /**
   * Works out one group decision in memory: each system's new state and generation, the command's targets,
   * the signed messages and the audit entries. The context is updated as if it were written (the group's
   * state, its changed systems), so the next plan in the same transaction sees this one.
   */
  private planApplication(group: GroupEntity, decided: DecidedCommand, now: Date, how: Application, context: DecisionContext): DecisionPlan {
    const { command } = decided;
    const targetState = command.action === 'revoke' ? 'revoked' : 'active';
    const targets: NewTarget[] = [];
    const messages: OutboxMessage[] = [];
    const changed: string[] = [];
    const unchanged: { systemId: string; desiredState: string; heldBy: string[] }[] = [];
    const changes: SystemChange[] = [];
    for (const system of context.systemsOfGroup.get(group.id) ?? []) {
      const otherRevoked = (context.groupsOfSystem.get(system.id) ?? []).filter((id) => id !== group.id && context.revokedGroups.has(id));
      const access = decideSystemAccess(command.action, system.desiredState, otherRevoked);
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
      messages.push(this.systemAccessChanged(command, system, generation, access.desiredState, context.exemptions.get(system.id) ?? [], now));
      changed.push(system.id);
      Object.assign(system, { desiredState: access.desiredState, generation, desiredCommandId: command.id, enforcementStatus: 'pending' });
    }
    if (targetState === 'revoked') context.revokedGroups.add(group.id);
    else context.revokedGroups.delete(group.id);
    const entries: AuditEntryInput[] = [
      ...how.precedingEntries,
      {
        actor: how.actor,
        sourceAddress: how.sourceAddress,
        action: command.action === 'revoke' ? 'group.revoked' : 'group.restored',
        groupId: group.id,
        commandId: command.id,
        reason: command.reason,
        incidentRef: command.incidentRef,
        details: {
          before: { state: group.state },
          after: { state: targetState },
          ...how.details,
          systemsChanged: changed,
          systemsUnchanged: unchanged,
          acknowledgeBy: command.acknowledgeBy.toISOString(),
        },
      },
    ];
    return { groupId: group.id, commandId: command.id, decided, targetState, changes, targets, messages, entries };
  }

  /**
   * Writes planned decisions, set-based, in ONE statement whatever the number of groups and systems
   * (data-modifying CTEs): the commands (new ones inserted, approved requests marked approved), the groups,
   * the systems, the command targets and the outbox. Returns the transaction's time, which the new targets
   * carry as `updated_at`.
   */
  private async writeApplications(manager: EntityManager, plans: readonly DecisionPlan[]): Promise<Date> {
    if (plans.length === 0) return new Date();
    const changes = plans.flatMap((plan) => plan.changes.map((change) => ({ ...change, commandId: plan.commandId })));
    if (new Set(changes.map((change) => change.id)).size !== changes.length) {
      // A system changed twice would be superseded by its own second change, which the statement below
      // cannot see (its parts share one snapshot). Revokes never change a system twice; nothing else writes several plans.
      throw new Error('a system cannot change twice in one set of decisions');
    }
    const targets = plans.flatMap((plan) => plan.targets);
    const inserted = plans.filter((plan) => plan.decided.write === 'insert').map((plan) => plan.decided.command);
    const approved = plans.filter((plan) => plan.decided.write === 'approve').map((plan) => plan.decided.command);
    // The parts run on one snapshot, so they must not touch the same rows: each writes its own table (the
    // commands inserted and those approved are different rows), and the superseded targets are older
    // generations than the ones inserted. The targets' foreign key to their command is checked at the end of
    // the statement, when the inserted commands are there. Arrays, not one parameter per value: no limit on
    // the number of rows.
    const params: unknown[] = [
      plans.map((plan) => plan.groupId),
      plans.map((plan) => plan.targetState),
      plans.map((plan) => plan.commandId),
      changes.map((c) => c.id),
      changes.map((c) => c.desiredState),
      changes.map((c) => c.generation),
      changes.map((c) => c.commandId),
      targets.map((t) => t.commandId),
      targets.map((t) => t.systemId),
      targets.map((t) => t.generation),
      targets.map((t) => t.desiredState),
      targets.map((t) => t.changed),
      targets.map((t) => t.status),
      targets.map((t) => t.detail ?? null),
      inserted.map((c) => c.id),
      inserted.map((c) => c.action),
      inserted.map((c) => c.groupId),
      inserted.map((c) => c.reason),
      inserted.map((c) => c.incidentRef),
      inserted.map((c) => c.requestedBy),
      inserted.map((c) => c.requestedAt),
      inserted.map((c) => c.acknowledgeBy),
      inserted.map((c) => c.approvalMode ?? null),
      approved.map((c) => c.id),
      approved.map((c) => c.acknowledgeBy),
      approved.map((c) => c.decidedBy ?? null),
      approved.map((c) => c.decidedAt ?? null),
      approved.map((c) => c.decisionComment ?? null),
    ];
    // The outbox's four arrays follow the others.
    const outbox = outboxInsert(plans.flatMap((plan) => plan.messages), params.length + 1);
    const [{ written_at: writtenAt }]: { written_at: Date }[] = await manager.query(
      `WITH new_commands AS (
         INSERT INTO commands (id, action, group_id, reason, incident_ref, requested_by, requested_at, acknowledge_by, approval_mode)
         SELECT * FROM unnest($15::uuid[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::timestamptz[],
                              $22::timestamptz[], $23::text[])
       ), approved_requests AS (
         UPDATE commands c SET approval_status = 'approved', acknowledge_by = u.acknowledge_by, decided_by = u.decided_by,
           decided_at = u.decided_at, decision_comment = u.decision_comment
         FROM unnest($24::uuid[], $25::timestamptz[], $26::text[], $27::timestamptz[], $28::text[])
           AS u(id, acknowledge_by, decided_by, decided_at, decision_comment)
         WHERE c.id = u.id
       ), decided_groups AS (
         UPDATE groups g SET state = u.state, last_command_id = u.command_id, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::uuid[]) AS u(id, state, command_id) WHERE g.id = u.id
       ), changed_systems AS (
         UPDATE systems s SET desired_state = u.desired_state, generation = u.generation, desired_command_id = u.command_id,
           enforcement_status = 'pending', enforcement_detail = NULL, updated_at = now()
         FROM unnest($4::text[], $5::text[], $6::bigint[], $7::uuid[]) AS u(id, desired_state, generation, command_id) WHERE s.id = u.id
       ), superseded AS (
         -- Older decisions still waiting on these systems will never be acknowledged as such: a newer one replaces them.
         UPDATE command_targets ct SET status = 'superseded', updated_at = now()
         FROM unnest($4::text[], $6::bigint[]) AS u(system_id, generation)
         WHERE ct.system_id = u.system_id AND ct.generation < u.generation AND ct.status IN ('pending', 'delivered', 'failed')
       ), new_targets AS (
         INSERT INTO command_targets (command_id, system_id, generation, desired_state, changed, status, detail)
         SELECT * FROM unnest($8::uuid[], $9::text[], $10::bigint[], $11::text[], $12::boolean[], $13::text[], $14::text[])
       )${outbox.sql ? `, outbox_messages AS (${outbox.sql})` : ''}
       -- Every part runs to completion whether read or not. now(): the transaction's time, the targets' updated_at.
       SELECT now() AS written_at`,
      [...params, ...outbox.params],
    );
    return writtenAt;
  }

  /**
   * Closes the group's open restore request, if any, because a newer decision about the group makes it
   * moot (superseded), or because its time ran out before (expired). Returns the audit entries to append.
   */
  private async closeOpenRequest(
    manager: EntityManager,
    group: GroupEntity,
    now: Date,
    cause: { actor: string; sourceAddress: string | null; by: string },
  ): Promise<AuditEntryInput[]> {
    const open = await manager.findOne(CommandEntity, {
      where: { groupId: group.id, approvalStatus: 'awaiting-approval' },
      lock: { mode: 'pessimistic_write' },
    });
    if (!open) return [];
    const { status, cause: closedBy } = closingOf(open, now, cause);
    return [await this.close(manager, open, status, now, closedBy)];
  }

  /** Marks a request expired or superseded and returns its audit entry (`restore.expired` / `restore.superseded`). */
  private async close(
    manager: EntityManager,
    request: CommandEntity,
    status: 'expired' | 'superseded',
    now: Date,
    cause: { actor: string; sourceAddress: string | null; by: string; why?: string },
  ): Promise<AuditEntryInput> {
    await manager.update(CommandEntity, { id: request.id }, { approvalStatus: status, decidedAt: now });
    return closedRequestEntry(request, status, cause);
  }

  private systemAccessChanged(
    command: CommandEntity,
    system: SystemEntity,
    generation: number,
    desiredState: 'active' | 'revoked',
    exemptPrincipals: readonly string[],
    now: Date,
  ): OutboxMessage {
    return this.messages.build({ command, system, generation, desiredState, exemptPrincipals }, now);
  }
}

/** A command target as a decision writes it (acknowledgements fill in the rest). */
type NewTarget = Pick<CommandTargetEntity, 'commandId' | 'systemId' | 'generation' | 'desiredState' | 'changed' | 'status' | 'detail'>;

interface SystemChange {
  id: string;
  desiredState: AccessState;
  generation: number;
}

/** What decisions in one transaction read: see `loadDecisionContext`. Updated as decisions are planned. */
interface DecisionContext {
  /** The decided groups' systems, by id; the same objects across groups. */
  systemsOfGroup: Map<string, SystemEntity[]>;
  /** Every group each of those systems is in. */
  groupsOfSystem: Map<string, string[]>;
  /** Which of those groups are revoked. */
  revokedGroups: Set<string>;
  exemptions: Map<string, string[]>;
}

/** The command a decision applies, and how `writeApplications` writes it: a new one, or a restore request approved now. */
interface DecidedCommand {
  command: CommandEntity;
  write: 'insert' | 'approve';
}

/** One group decision worked out in memory, to be written with others (`writeApplications`). */
interface DecisionPlan {
  groupId: string;
  commandId: string;
  decided: DecidedCommand;
  targetState: AccessState;
  changes: SystemChange[];
  targets: NewTarget[];
  messages: OutboxMessage[];
  entries: AuditEntryInput[];
}

/** The audit entry of a decision that found the group in the requested state already. */
function repeatedDecisionEntry(
  group: GroupEntity,
  action: CommandAction,
  decision: { actor: string; sourceAddress: string | null; reason: string; incidentRef?: string },
): AuditEntryInput {
  return {
    actor: decision.actor,
    sourceAddress: decision.sourceAddress,
    action: `group.${action}.repeated`,
    groupId: group.id,
    commandId: group.lastCommandId,
    reason: decision.reason,
    incidentRef: decision.incidentRef,
    details: { note: `group was already ${group.state}; nothing was published` },
  };
}

/**
 * How a newer decision about the group closes its open restore request: `expired` (by the system) if its
 * time had run out, `superseded` (by the decision's actor) otherwise.
 */
function closingOf(
  request: CommandEntity,
  now: Date,
  decision: { actor: string; sourceAddress: string | null; by: string },
): { status: 'expired' | 'superseded'; cause: { actor: string; sourceAddress: string | null; by: string; why?: string } } {
  return effectiveRequestStatus(requestFacts(request), now) === 'expired'
    ? { status: 'expired', cause: { actor: 'system', sourceAddress: null, by: decision.by } }
    : { status: 'superseded', cause: { ...decision, why: `the group was decided again (${decision.by})` } };
}

/** The audit entry of a restore request closed as expired or superseded (`restore.expired` / `restore.superseded`). */
function closedRequestEntry(
  request: CommandEntity,
  status: 'expired' | 'superseded',
  cause: { actor: string; sourceAddress: string | null; by: string; why?: string },
): AuditEntryInput {
  return {
    actor: cause.actor,
    sourceAddress: cause.sourceAddress,
    action: `restore.${status}`,
    groupId: request.groupId,
    commandId: request.id,
    reason: request.reason,
    incidentRef: request.incidentRef,
    details: {
      before: { approval: 'awaiting-approval' },
      after: { approval: status },
      requestedBy: request.requestedBy,
      expiresAt: request.approvalExpiresAt?.toISOString() ?? null,
      ...(cause.why ? { why: cause.why } : {}),
      noticedBy: cause.by,
    },
  };
}

/** A target as `writeApplications` inserted it: what acknowledgements fill in later is still empty. */
function writtenTarget(target: NewTarget, writtenAt: Date): CommandTargetEntity {
  return { ...target, willRetry: null, principalsChanged: null, sessionsTerminated: null, adapterId: null, updatedAt: writtenAt };
}

function currentEnforcement(system: SystemEntity): TargetStatus {
  return system.enforcedGeneration >= system.generation ? 'enforced' : system.enforcementStatus;
}

/** A restore request's approval facts (its approval columns are set on every request). */
function requestFacts(request: CommandEntity): RestoreRequestFacts {
  return {
    approvalStatus: request.approvalStatus!,
    approvalExpiresAt: request.approvalExpiresAt!,
    requestedBy: request.requestedBy,
    approvalBasisCommandId: request.approvalBasisCommandId ?? null,
  };
}
