import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CommandEntity, CommandTargetEntity } from '../database/entities';
import { NotFoundError } from '../errors/domain.errors';
import { aggregateCommandStatus, isAwaitingAcknowledgement, type CommandViewStatus } from './command-status';
import { effectiveRequestStatus } from './restore-approval';

export interface CommandQuery {
  groupId?: string;
  /** Return commands requested before this one (the `nextCursor` of the previous page). */
  before?: { requestedAt: Date; id: string };
  limit: number;
}

/** Reads commands with the enforcement status of every system they affect. */
@Injectable()
export class CommandsService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async get(id: string, now = new Date()) {
    const command = await this.dataSource.getRepository(CommandEntity).findOneBy({ id });
    if (!command) throw new NotFoundError('command', id);
    const targets = await this.dataSource.getRepository(CommandTargetEntity).find({
      where: { commandId: id },
      order: { systemId: 'ASC' },
    });
    return commandView(command, targets, now);
  }

  async list(query: CommandQuery, now = new Date()) {
    const builder = this.dataSource.getRepository(CommandEntity).createQueryBuilder('command');
    if (query.groupId) builder.andWhere('command.group_id = :groupId', { groupId: query.groupId });
    if (query.before) {
      builder.andWhere('(command.requested_at, command.id) < (:requestedAt, :id)', query.before);
    }
    const commands = await builder
      .orderBy('command.requested_at', 'DESC')
      .addOrderBy('command.id', 'DESC')
      .limit(query.limit + 1)
      .getMany();
    const page = commands.slice(0, query.limit);
    const targets = page.length
      ? await this.dataSource
          .getRepository(CommandTargetEntity)
          .createQueryBuilder('target')
          .where('target.command_id IN (:...ids)', { ids: page.map((command) => command.id) })
          .orderBy('target.system_id', 'ASC')
          .getMany()
      : [];
    const last = page[page.length - 1];
    return {
      items: page.map((command) =>
        commandView(
          command,
          targets.filter((target) => target.commandId === command.id),
          now,
        ),
      ),
      nextCursor: commands.length > query.limit ? `${last.requestedAt.toISOString()}_${last.id}` : null,
    };
  }
}

export function commandView(command: CommandEntity, targets: CommandTargetEntity[], now: Date) {
  const requestStatus =
    command.approvalStatus && command.approvalExpiresAt
      ? effectiveRequestStatus({ approvalStatus: command.approvalStatus, approvalExpiresAt: command.approvalExpiresAt }, now)
      : null;
  // A restore request is applied only once approved; until then nothing is enforced, nothing is late.
  const applied = requestStatus === null || requestStatus === 'approved';
  const late = applied && now.getTime() > command.acknowledgeBy.getTime();
  // By system id in code-unit order, whatever the database's collation: an answer built from a transaction's
  // own rows and a later read list the systems alike.
  const systems = [...targets].sort((a, b) => (a.systemId < b.systemId ? -1 : a.systemId > b.systemId ? 1 : 0));
  const counts: Record<string, number> = {};
  for (const target of systems) counts[target.status] = (counts[target.status] ?? 0) + 1;
  return {
    id: command.id,
    action: command.action,
    groupId: command.groupId,
    reason: command.reason,
    incidentRef: command.incidentRef,
    requestedBy: command.requestedBy,
    requestedAt: command.requestedAt.toISOString(),
    acknowledgeBy: applied ? command.acknowledgeBy.toISOString() : null,
    status: (applied ? aggregateCommandStatus(targets, command.acknowledgeBy, now) : requestStatus) as CommandViewStatus,
    /**
     * How the restore was authorised: `four-eyes` (a request; `status` where it stands, `decidedBy` the
     * approver or rejecter, `comment` the approval comment or rejection reason) or `single-admin` (an admin
     * alone, as the group allows). Null for revokes and for restores made before approvals existed.
     */
    approval: command.approvalMode
      ? {
          mode: command.approvalMode,
          status: requestStatus,
          expiresAt: command.approvalExpiresAt?.toISOString() ?? null,
          decidedBy: command.decidedBy ?? null,
          decidedAt: command.decidedAt?.toISOString() ?? null,
          comment: command.decisionComment ?? null,
        }
      : null,
    counts,
    systems: systems.map((target) => ({
      systemId: target.systemId,
      generation: target.generation,
      desiredState: target.desiredState,
      changed: target.changed,
      status: target.status,
      overdue: late && isAwaitingAcknowledgement(target.status),
      detail: target.detail,
      willRetry: target.willRetry,
      principalsChanged: target.principalsChanged,
      sessionsTerminated: target.sessionsTerminated,
      adapterId: target.adapterId,
      updatedAt: target.updatedAt.toISOString(),
    })),
  };
}

export type CommandView = ReturnType<typeof commandView>;
