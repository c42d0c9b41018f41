import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, QueryFailedError, type EntityManager } from 'typeorm';
import { AuditLog, type AuditEntryInput } from '../audit/audit-log.service';
import { currentRequestCredential, type RequestCredential } from '../audit/request-credential';
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
import { DomainError, NotFoundError, ServiceBusyError } from '../errors/domain.errors';
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
  private readonly log = new Logger(GroupDecisionsService.name);
  /** Decisions handed in while a transaction records others: the next transaction records them together. */
  private readonly waiting: Queued[] = [];
  /** Transactions recording decisions now, and how many of them have run longer than `SLOW_DECISION_TRANSACTION_MS`. */
  private lanes = 0;
  private slowLanes = 0;
  /** The groups the running transactions are deciding about: no other transaction takes a decision about them. */
  private readonly busyGroups = new Set<string>();
  /** The constants below, as fields so that specs can change them. */
  private slowTransactionMs = SLOW_DECISION_TRANSACTION_MS;
  private batchLockTimeoutMs = DECISION_BATCH_LOCK_TIMEOUT_MS;
  private maxWaitingDecisions = MAX_WAITING_DECISIONS;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
    private readonly commands: CommandsService,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
    private readonly messages: SystemAccessMessageFactory,
  ) {}

  async decide(decision: GroupDecision): Promise<GroupDecisionOutcome> {
    const answer = await this.submit({ kind: 'decide', decision });
    const recorded = answer.recorded!;
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
    const { written } = await this.submit({ kind: 'approve', input });
    return commandView(written!.command, written!.targets, new Date());
  }

  /** Closes a restore request without applying it. The requester may withdraw their own request this way. */
  async reject(input: RequestDecision): Promise<CommandView> {
    const { written } = await this.submit({ kind: 'reject', input });
    return commandView(written!.command, written!.targets, new Date());
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
      const groups = await lockGroups(manager, groupIds);
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

  // ---- group commit ----------------------------------------------------------------------------------

  /**
   * Hands a decision to the next transaction. Decisions made while a transaction records others are
   * recorded together by the next one (group commit, as acknowledgements are): one transaction, one
   * commit and one turn of the audit chain's lock for many, instead of one each. Each decision is judged
   * exactly as it would be alone, after the ones recorded before it, on the rows the transaction locked;
   * a refusal (404, 403, 409) refuses that decision only.
   *
   * Decisions about one group are recorded one transaction after the other, in the order they came; a
   * transaction never takes a group another one is deciding about. One transaction runs at a time unless
   * it is slow — waiting on a lock another transaction holds (an acknowledgement batch, a bulk revoke, an
   * operator's session): then another starts for the decisions waiting, up to `MAX_DECISION_TRANSACTIONS`.
   * A transaction of several decisions gives up a lock wait after `DECISION_BATCH_LOCK_TIMEOUT_MS`; its
   * decisions are then recorded one by one, so that one group's wait does not hold up decisions about
   * others for longer than that. More than `MAX_WAITING_DECISIONS` waiting are refused with a 503.
   */
  private async submit(request: DecisionRequest): Promise<DecisionAnswer> {
    if (this.waiting.length >= this.maxWaitingDecisions) {
      throw new ServiceBusyError(`${this.waiting.length} decisions are waiting to be recorded; nothing was recorded for this one: retry shortly`);
    }
    const receivedAt = new Date();
    // The credential is the caller's: the transaction runs for many callers, in whichever's context.
    const credential = currentRequestCredential() ?? null;
    const groupId = request.kind === 'decide' ? request.decision.groupId : await this.groupOfCommand(request.input.commandId);
    return new Promise<DecisionAnswer>((resolve, reject) => {
      this.waiting.push({ request, groupId, receivedAt, credential, solo: false, resolve, reject });
      if (this.lanes === this.slowLanes) this.startLane();
    });
  }

  /** The group a command is about (it never changes), for answers to restore requests; 404 for no such command. */
  private async groupOfCommand(commandId: string): Promise<string> {
    const [row]: { group_id: string }[] = await this.dataSource.query('SELECT group_id FROM commands WHERE id = $1', [commandId]);
    if (!row) throw new NotFoundError('command', commandId);
    return row.group_id;
  }

  /** Starts a transaction loop for the waiting decisions, if fewer than the most run already. */
  private startLane(): void {
    if (this.lanes >= MAX_DECISION_TRANSACTIONS) return;
    this.lanes += 1;
    void this.runLane();
  }

  /** Records waiting decisions, a batch per transaction, until none it may take waits. Never rejects. */
  private async runLane(): Promise<void> {
    // Let the decisions handed in during this turn of the event loop join.
    await new Promise((resolve) => setImmediate(resolve));
    for (;;) {
      // Taken and left in the same turn: a decision handed in later finds no lane and starts one, and the
      // groups of a batch are free again (in `recordBatch`) before the next is taken.
      const batch = this.takeBatch();
      if (batch.length === 0) {
        this.lanes -= 1;
        return;
      }
      let slow = false;
      const watchdog = setTimeout(() => {
        slow = true;
        this.slowLanes += 1;
        if (this.waiting.length > 0 && this.lanes === this.slowLanes) this.startLane();
      }, this.slowTransactionMs);
      try {
        await this.recordBatch(batch);
      } finally {
        clearTimeout(watchdog);
        if (slow) this.slowLanes -= 1;
      }
    }
  }

  /**
   * The next decisions to record together, in the order they came: none about a group another transaction
   * is deciding about (nor any later one about that group), and a decision to be recorded alone only alone.
   * Their groups are marked busy until the batch is recorded.
   */
  private takeBatch(): Queued[] {
    const batch: Queued[] = [];
    const passed = new Set<string>(this.busyGroups);
    const left: Queued[] = [];
    let index = 0;
    for (; index < this.waiting.length && batch.length < MAX_DECISIONS_PER_TRANSACTION; index += 1) {
      const item = this.waiting[index];
      if (passed.has(item.groupId) || (item.solo && batch.length > 0)) {
        passed.add(item.groupId);
        left.push(item);
        continue;
      }
      batch.push(item);
      if (item.solo) {
        index += 1;
        break;
      }
    }
    this.waiting.splice(0, index, ...left);
    for (const item of batch) this.busyGroups.add(item.groupId);
    return batch;
  }

  /**
   * One batch in one transaction, then its answers. If a transaction of several fails — or gives up a lock
   * wait — before it committed, its decisions go back, first in line, to be recorded one by one: one that
   * cannot be recorded fails alone. A failure of the commit itself whose outcome is unknown (the connection
   * was lost) is not retried: the decisions may be recorded.
   */
  private async recordBatch(batch: readonly Queued[]): Promise<void> {
    let outcome: { settled: Settled } | { error: unknown; retry: boolean };
    let judged = false;
    try {
      const settled = await this.dataSource.transaction(async (manager) => {
        if (batch.length > 1) await manager.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(this.batchLockTimeoutMs))}`);
        const result = await this.decideTogether(manager, batch);
        // Not at COMMIT: the audit chain's head, taken there, is the same for every transaction (recording the
        // decisions one by one would only wait for it more often).
        if (batch.length > 1) await manager.query('SET LOCAL lock_timeout = DEFAULT');
        judged = true;
        return result;
      });
      outcome = { settled };
    } catch (error) {
      // Failed before COMMIT, or refused at COMMIT for a reason that rolls it back (a serialization failure or
      // deadlock, a deferred constraint, a lock not available, an error raised by the audit chain's trigger).
      // Anything else at COMMIT — a socket error (ECONNRESET, ...), the server shutting down while it waited
      // for a standby — leaves the outcome unknown: the decisions may be recorded, so they are not retried.
      const sqlState = error instanceof QueryFailedError ? (error.driverError as { code?: unknown } | undefined)?.code : undefined;
      const rolledBack = !judged || (typeof sqlState === 'string' && ROLLED_BACK_AT_COMMIT.test(sqlState));
      outcome = { error, retry: batch.length > 1 && rolledBack };
    }
    try {
      if ('settled' in outcome) {
        // Decisions about what an earlier one in the batch decided go first into the next transaction.
        this.waiting.unshift(...outcome.settled.deferred);
        settle(outcome.settled);
      } else if (outcome.retry) {
        const { error } = outcome;
        const why = error instanceof Error ? error.message : String(error);
        this.log.warn(`recording ${batch.length} decisions together failed (${why}); recording each alone`);
        this.waiting.unshift(...batch.map((item) => ({ ...item, solo: true })));
      } else {
        for (const item of batch) item.reject(outcome.error);
      }
    } finally {
      for (const item of batch) this.busyGroups.delete(item.groupId);
    }
  }

  /**
   * Records decisions in ONE transaction, in the lock order every transaction uses: the groups they
   * concern (by id), then the restore requests of those groups and the commands answered (by id), then
   * the systems of the groups a decision may apply to (by id). Each decision is then judged in memory, in
   * arrival order, seeing the ones before it; everything is written set-based and the audit entries of all
   * are appended once, in the same order.
   *
   * A decision about a group another decision of the batch already decided, or about systems another one
   * changed, is deferred to the next transaction (a system cannot change twice in one set of writes): the
   * outcome is the same as if all had run one after the other in the order they were recorded.
   */
  private async decideTogether(manager: EntityManager, batch: readonly Queued[]): Promise<Settled> {
    const now = new Date();
    // Each decision's group is known (an answer's, from its request: a command's group never changes).
    const groupIds = [...new Set(batch.map((item) => item.groupId))];
    const commandIds = [...new Set(batch.flatMap((item) => (item.request.kind === 'decide' ? [] : [item.request.input.commandId.toLowerCase()])))];
    const groups = await lockGroups(manager, groupIds);
    const groupsById = new Map(groups.map((group) => [group.id, group]));
    // The restore requests of those groups (a decision closes or checks them) and the commands answered.
    const commands = groups.length
      ? await manager
          .getRepository(CommandEntity)
          .createQueryBuilder('command')
          .where(
            "(command.groupId = ANY(:lockedGroupIds) AND command.approvalStatus = 'awaiting-approval') OR command.id = ANY(CAST(:commandIds AS uuid[]))",
            { lockedGroupIds: groups.map((group) => group.id), commandIds },
          )
          .orderBy('command.id', 'ASC')
          .setLock('pessimistic_write')
          .getMany()
      : [];
    const commandsById = new Map(commands.map((command) => [command.id, command]));
    // Only the groups a decision may apply to now need their systems locked and read.
    const applying = groups.filter((group) =>
      batch.some(({ request }) => {
        if (request.kind !== 'decide') {
          // An approval applies the restore only if the request is still open (judgeRequestAnswer says the rest).
          const answered = commandsById.get(request.input.commandId.toLowerCase());
          return request.kind === 'approve' && answered?.groupId === group.id && answered.approvalStatus === 'awaiting-approval';
        }
        const { decision } = request;
        if (decision.groupId !== group.id) return false;
        if (decision.action === 'revoke') return group.state !== 'revoked';
        return group.state === 'revoked' && restoreRoute(group.restoreApproval, decision.roles ?? ['security-lead']) === 'apply-now';
      }),
    );
    const context = await this.loadDecisionContext(manager, applying.map((group) => group.id), now);

    const decidedGroups = new Set<string>();
    const changedSystems = new Set<string>();
    const judged: { item: Queued; effects: Effects }[] = [];
    const deferred: Queued[] = [];
    for (const item of batch) {
      const { groupId, request } = item;
      const systems = context.systemsOfGroup.get(groupId) ?? [];
      if (decidedGroups.has(groupId) || systems.some((s) => changedSystems.has(s.id))) {
        deferred.push(item);
        // What comes after it and touches the same group or systems waits too: the batch keeps arrival order.
        decidedGroups.add(groupId);
        for (const system of systems) changedSystems.add(system.id);
        continue;
      }
      const state: JudgeState = { now, receivedAt: item.receivedAt, groupsById, commandsById, context };
      let effects: Effects;
      try {
        effects = request.kind === 'decide' ? this.judgeGroupDecision(request.decision, state) : this.judgeRequestAnswer(request.kind, request.input, state);
      } catch (error) {
        // Anything but a refusal fails the transaction (then each decision is recorded alone): a plan that
        // failed half-way may have left the shared context changed for the decisions after it.
        if (!(error instanceof DomainError)) throw error;
        // A refusal is made before anything is decided: nothing of this decision is written.
        effects = { closes: [], requests: [], entries: [], outcome: { error } };
      }
      if (effects.closes.length || effects.requests.length || effects.plan || effects.entries.length) {
        decidedGroups.add(groupId);
        for (const change of effects.plan?.changes ?? []) changedSystems.add(change.id);
      }
      judged.push({ item, effects });
    }

    const all = judged.map(({ effects }) => effects);
    const closes = all.flatMap((effects) => effects.closes);
    if (closes.length) {
      await manager.query(
        `UPDATE commands c SET approval_status = u.status, decided_at = $2, decided_by = u.decided_by, decision_comment = u.comment
         FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[]) AS u(id, status, decided_by, comment) WHERE c.id = u.id`,
        [closes.map((close) => close.id), now, closes.map((close) => close.status), closes.map((close) => close.decidedBy), closes.map((close) => close.comment)],
      );
    }
    const requests = all.flatMap((effects) => effects.requests);
    if (requests.length) await manager.insert(CommandEntity, requests);
    const plans = all.flatMap((effects) => (effects.plan ? [effects.plan] : []));
    const writtenAt = await this.writeApplications(manager, plans);
    // Each entry says how its own caller authenticated: the transaction runs for many callers.
    await this.auditLog.append(
      manager,
      judged.flatMap(({ item, effects }) => effects.entries.map((entry) => ({ ...entry, credential: item.credential }))),
    );
    return {
      deferred,
      answers: judged.map(({ item, effects }) => {
        const { outcome } = effects;
        if ('error' in outcome) return { item, error: outcome.error };
        if ('recorded' in outcome) {
          const { written } = outcome.recorded;
          const targets = written && effects.plan ? effects.plan.targets.map((target) => writtenTarget(target, writtenAt)) : (written?.targets ?? []);
          return { item, answer: { recorded: { ...outcome.recorded, ...(written ? { written: { command: written.command, targets } } : {}) } } };
        }
        const targets = effects.plan ? effects.plan.targets.map((target) => writtenTarget(target, writtenAt)) : [];
        return { item, answer: { written: { command: outcome.written.command, targets } } };
      }),
    };
  }

  /** A revoke or restore of a group, judged on the locked rows: what it writes, and its answer. */
  private judgeGroupDecision(decision: GroupDecision, state: JudgeState): Effects {
    const { now } = state;
    const actor = `user:${decision.requestedBy}`;
    const sourceAddress = decision.sourceAddress ?? null;
    const effects = newEffects();
    const group = state.groupsById.get(decision.groupId);
    if (!group) throw new NotFoundError('group', decision.groupId);
    const open = openRequestOf(group, state.commandsById);
    const closeOpen = (by: string): AuditEntryInput[] => {
      if (!open) return [];
      const { status, cause } = closingOf(open, now, { actor, sourceAddress, by });
      effects.closes.push({ id: open.id, status, decidedBy: null, comment: null });
      return [closedRequestEntry(open, status, cause)];
    };

    const targetState = decision.action === 'revoke' ? 'revoked' : 'active';
    if (group.state === targetState) {
      // A revoke, even one that changes nothing, says the group must stay revoked: an open restore request
      // made before it is void.
      const closed = decision.action === 'revoke' ? closeOpen('a repeated revoke') : [];
      effects.entries.push(...closed, repeatedDecisionEntry(group, decision.action, { ...decision, actor, sourceAddress }));
      effects.outcome = { recorded: { accepted: false, awaitingApproval: false, commandId: group.lastCommandId } };
      return effects;
    }

    const command = this.newCommand(decision, now);
    if (decision.action === 'revoke') {
      const closed = closeOpen(`revoke ${command.id}`);
      this.applyDecision(effects, group, { command, write: 'insert' }, state, { actor, sourceAddress, precedingEntries: closed, details: {} });
      effects.outcome = { recorded: { accepted: true, awaitingApproval: false, commandId: command.id, written: { command, targets: [] } } };
      return effects;
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
      const closed = closeOpen(`single-admin restore ${command.id}`);
      const singleAdmin: CommandEntity = { ...command, approvalMode: 'single-admin' };
      this.applyDecision(effects, group, { command: singleAdmin, write: 'insert' }, state, {
        actor,
        sourceAddress,
        precedingEntries: closed,
        details: {
          approval: 'single-admin',
          note: 'single-person restore by an admin: the group allows it (restoreApproval = single-admin)',
        },
      });
      effects.outcome = { recorded: { accepted: true, awaitingApproval: false, commandId: command.id, written: { command: singleAdmin, targets: [] } } };
      return effects;
    }

    // Four eyes: record the request only. Nothing changes on any system until another security lead approves.
    const entries: AuditEntryInput[] = [];
    if (open) {
      if (effectiveRequestStatus(requestFacts(open), now) !== 'expired') {
        throw new RequestConflictError(
          'restore_request_open',
          `group "${group.id}" already has an open restore request ${open.id} (requested by ${open.requestedBy}, ` +
            `expires ${open.approvalExpiresAt!.toISOString()}): approve or reject it first`,
        );
      }
      effects.closes.push({ id: open.id, status: 'expired', decidedBy: null, comment: null });
      entries.push(closedRequestEntry(open, 'expired', { actor: 'system', sourceAddress: null, by: `a new restore request by ${actor}` }));
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
    effects.requests.push(request);
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
    effects.entries.push(...entries);
    // A request has no targets until it is approved.
    effects.outcome = { recorded: { accepted: true, awaitingApproval: true, commandId: command.id, written: { command: request, targets: [] } } };
    return effects;
  }

  /**
   * A security lead's answer to a restore request, judged on the locked rows. A refusal that records
   * something (the request found expired or superseded) writes that, and answers with the refusal.
   */
  private judgeRequestAnswer(kind: 'approve' | 'reject', input: RequestDecision, state: JudgeState): Effects {
    const { now } = state;
    const actor = `user:${input.decidedBy}`;
    const sourceAddress = input.sourceAddress ?? null;
    const effects = newEffects();
    const request = state.commandsById.get(input.commandId.toLowerCase());
    const group = request && state.groupsById.get(request.groupId);
    if (!request || !group) throw new NotFoundError('command', input.commandId);
    if (request.action !== 'restore' || !request.approvalStatus) {
      throw new RequestConflictError(
        'not_a_restore_request',
        `command ${request.id} is a ${request.action}${request.action === 'restore' ? ' that needed no approval' : ''}; ` +
          'only restore requests are approved or rejected',
      );
    }
    const facts = requestFacts(request);
    // An answer given before the request expired counts, however long it waited for its transaction.
    const verdict = judgeDecision(kind, facts, input.decidedBy, group, state.receivedAt);
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
          effects.closes.push({ id: request.id, status: 'expired', decidedBy: null, comment: null });
          effects.entries.push(closedRequestEntry(request, 'expired', { actor: 'system', sourceAddress: null, by: `the ${kind} by ${actor}` }));
          effects.outcome = {
            error: new RequestConflictError(
              'request_expired',
              `restore request ${request.id} expired at ${facts.approvalExpiresAt.toISOString()} without approval; request the restore again`,
            ),
          };
          return effects;
        case 'superseded':
          effects.closes.push({ id: request.id, status: 'superseded', decidedBy: null, comment: null });
          effects.entries.push(
            closedRequestEntry(request, 'superseded', { actor: 'system', sourceAddress: null, by: `the ${kind} by ${actor}`, why: verdict.why }),
          );
          effects.outcome = {
            error: new RequestConflictError('request_superseded', `restore request ${request.id} is superseded: ${verdict.why}; nothing was changed`),
          };
          return effects;
      }
    }

    const decidedFields = { decidedBy: input.decidedBy, decidedAt: now, decisionComment: input.comment ?? null };
    if (kind === 'reject') {
      effects.closes.push({ id: request.id, status: 'rejected', decidedBy: input.decidedBy, comment: input.comment ?? null });
      effects.entries.push({
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
      effects.outcome = { written: { command: { ...request, approvalStatus: 'rejected', ...decidedFields }, targets: [] } };
      return effects;
    }

    // Approved: from here on it is the restore decision, made now.
    const acknowledgeBy = new Date(now.getTime() + this.config.acknowledgementDeadlineSeconds * 1000);
    const command: CommandEntity = { ...request, approvalStatus: 'approved', acknowledgeBy, ...decidedFields };
    this.applyDecision(effects, group, { command, write: 'approve' }, state, {
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
    effects.outcome = { written: { command, targets: [] } };
    return effects;
  }

  /** The group's decision planned onto its systems (see `planApplication`), with its audit entries. */
  private applyDecision(effects: Effects, group: GroupEntity, decided: DecidedCommand, state: JudgeState, how: Application): void {
    const plan = this.planApplication(group, decided, state.now, how, state.context);
    effects.plan = plan;
    effects.entries.push(...plan.entries);
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
      // cannot see (its parts share one snapshot). A bulk revoke never changes a system twice, and the group commit
      // defers a decision about a system changed earlier in its batch (decideTogether): this guards both.
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

// ---- group commit: what a decision is, and what judging it produced ---------------------------------

/** At most this many decisions share a transaction (more wait for the next one). */
const MAX_DECISIONS_PER_TRANSACTION = 64;
/**
 * At most this many transactions record decisions at once (the pool has 10 connections; reports, the relay
 * and reads need theirs). Each decides about other groups, but several may wait on one lock held elsewhere
 * on systems their groups share; then a decision about yet another group waits for one of them.
 */
const MAX_DECISION_TRANSACTIONS = 6;
/** A decision transaction running this long is taken to wait on a lock: the next one may start meanwhile. */
const SLOW_DECISION_TRANSACTION_MS = 250;
/** A transaction of several decisions waits this long for a lock, then its decisions are recorded one by one. */
const DECISION_BATCH_LOCK_TIMEOUT_MS = 1000;
/** SQLSTATEs of a COMMIT refused and rolled back: classes 40 (rollback), 23 (constraints), 55P03, P0 (raised by a trigger). */
const ROLLED_BACK_AT_COMMIT = /^(40[0-9A-Z]{3}|23[0-9A-Z]{3}|55P03|P0[0-9A-Z]{3})$/;
/** Decisions waiting beyond this are refused (503) rather than queued without bound. */
const MAX_WAITING_DECISIONS = 5000;

/** A decision handed to `submit`. */
type DecisionRequest = { kind: 'decide'; decision: GroupDecision } | { kind: 'approve' | 'reject'; input: RequestDecision };

/** The answer to a decision once its transaction committed: `recorded` for `decide`, `written` for answers to requests. */
interface DecisionAnswer {
  recorded?: Recorded;
  written?: WrittenCommand;
}

interface Queued {
  request: DecisionRequest;
  /** The group it is about (for an answer to a request, the request's). */
  groupId: string;
  /** When the service received it: an answer to a restore request is judged against the request's expiry then. */
  receivedAt: Date;
  /** To be recorded alone: a transaction that recorded it with others failed. */
  solo: boolean;
  /** How the caller authenticated, for its audit entries (null: not through the API). */
  credential: RequestCredential | null;
  resolve: (answer: DecisionAnswer) => void;
  reject: (error: unknown) => void;
}

/** A restore request closed (expired, superseded) or rejected by a decision. */
interface CommandClose {
  id: string;
  status: 'expired' | 'superseded' | 'rejected';
  decidedBy: string | null;
  comment: string | null;
}

/** What judging one decision produced: what it writes, and the answer its caller gets after the commit. */
interface Effects {
  closes: CommandClose[];
  /** Four-eyes restore requests, inserted. */
  requests: CommandEntity[];
  plan?: DecisionPlan;
  entries: AuditEntryInput[];
  outcome: { recorded: Recorded } | { written: WrittenCommand } | { error: Error };
}

/** The rows a batch's transaction locked and read, shared by the decisions judged in it. */
interface JudgeState {
  now: Date;
  /** When the decision being judged was received. */
  receivedAt: Date;
  groupsById: ReadonlyMap<string, GroupEntity>;
  /** The locked groups' open restore requests and the commands answered, by id (lower case). */
  commandsById: ReadonlyMap<string, CommandEntity>;
  context: DecisionContext;
}

/** A batch's transaction committed: each decision's answer or refusal, and those left to the next transaction. */
interface Settled {
  deferred: Queued[];
  answers: ({ item: Queued; answer: DecisionAnswer } | { item: Queued; error: Error })[];
}

function settle(settled: Settled): void {
  for (const answered of settled.answers) {
    if ('error' in answered) answered.item.reject(answered.error);
    else answered.item.resolve(answered.answer);
  }
}

function newEffects(): Effects {
  return { closes: [], requests: [], entries: [], outcome: { error: new Error('decision not judged') } };
}

/** The group's open restore request among the locked commands, if any. */
function openRequestOf(group: GroupEntity, commandsById: ReadonlyMap<string, CommandEntity>): CommandEntity | undefined {
  for (const command of commandsById.values()) {
    if (command.groupId === group.id && command.approvalStatus === 'awaiting-approval') return command;
  }
  return undefined;
}

/** The groups, locked for update in id order: the first lock every decision transaction takes. */
function lockGroups(manager: EntityManager, groupIds: readonly string[]): Promise<GroupEntity[]> {
  return manager
    .getRepository(GroupEntity)
    .createQueryBuilder('grp')
    .where('grp.id = ANY(:groupIds)', { groupIds })
    .orderBy('grp.id', 'ASC')
    .setLock('pessimistic_write')
    .getMany();
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
