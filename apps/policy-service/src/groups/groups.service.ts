import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In, type EntityManager } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { CommandEntity, GroupEntity, GroupSystemEntity, SystemEntity } from '../database/entities';
import { AlreadyExistsError, ConflictError, InvalidReferenceError, NotFoundError } from '../errors/domain.errors';
import { exemptionsBySystem } from '../systems/exemptions';
import { systemView } from '../systems/system.view';
import type { CreateGroupRequest, RestoreApprovalRequest, UpdateGroupRequest } from './group.request.dto';

@Injectable()
export class GroupsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async create(request: CreateGroupRequest, actor: string, sourceAddress?: string | null) {
    await this.dataSource.transaction(async (manager) => {
      await this.assertSystemsExist(manager, request.systemIds);
      const inserted = await manager.query(
        `INSERT INTO groups (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [request.id, request.name],
      );
      if (inserted.length === 0) throw new AlreadyExistsError('group', request.id);
      await this.insertMembers(manager, request.id, request.systemIds);
      await this.auditLog.append(manager, {
        actor,
        sourceAddress,
        action: 'group.created',
        groupId: request.id,
        details: { after: { name: request.name, systemIds: [...request.systemIds].sort(), restoreApproval: 'four-eyes' } },
      });
    });
    return this.get(request.id);
  }

  /**
   * Renames a group or replaces its membership. The membership of a revoked group cannot change: adding
   * or removing a system there would silently revoke or restore it, which only a decision may do.
   */
  async update(id: string, request: UpdateGroupRequest, actor: string, sourceAddress?: string | null) {
    await this.dataSource.transaction(async (manager) => {
      const group = await manager.findOne(GroupEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!group) throw new NotFoundError('group', id);
      const before = (await manager.find(GroupSystemEntity, { where: { groupId: id } })).map((row) => row.systemId).sort();
      const after = [...request.systemIds].sort();
      const membershipChanged = before.join('\n') !== after.join('\n');
      if (membershipChanged && group.state === 'revoked') {
        throw new ConflictError(
          `group "${id}" is revoked: restore it before changing its systems, or revoke another group that covers them`,
        );
      }
      await this.assertSystemsExist(manager, request.systemIds);
      if (membershipChanged) {
        await manager.delete(GroupSystemEntity, { groupId: id });
        await this.insertMembers(manager, id, request.systemIds);
      }
      await manager.query('UPDATE groups SET name = $2, updated_at = now() WHERE id = $1', [id, request.name]);
      await this.auditLog.append(manager, {
        actor,
        sourceAddress,
        action: 'group.updated',
        groupId: id,
        details: { before: { name: group.name, systemIds: before }, after: { name: request.name, systemIds: after } },
      });
    });
    return this.get(id);
  }

  /**
   * Who may restore the group: `four-eyes` (a security lead requests, a different one approves) or
   * `single-admin` (an admin may also restore alone). Admins only; audited with before and after. Open
   * restore requests stay as they are: they still need their second security lead.
   */
  async setRestoreApproval(id: string, request: RestoreApprovalRequest, actor: string, sourceAddress?: string | null) {
    await this.dataSource.transaction(async (manager) => {
      const group = await manager.findOne(GroupEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!group) throw new NotFoundError('group', id);
      if (group.restoreApproval === request.restoreApproval) return;
      await manager.query('UPDATE groups SET restore_approval = $2, updated_at = now() WHERE id = $1', [id, request.restoreApproval]);
      await this.auditLog.append(manager, {
        actor,
        sourceAddress,
        action: 'group.restore-approval-changed',
        groupId: id,
        reason: request.reason,
        incidentRef: request.incidentRef,
        details: { before: { restoreApproval: group.restoreApproval }, after: { restoreApproval: request.restoreApproval } },
      });
    });
    return this.get(id);
  }

  async list() {
    const rows: {
      id: string;
      name: string;
      state: string;
      last_command_id: string | null;
      restore_approval: string;
      system_count: string;
    }[] = await this.dataSource.query(`
        SELECT g.id, g.name, g.state, g.last_command_id, g.restore_approval, count(gs.system_id) AS system_count
        FROM groups g LEFT JOIN group_systems gs ON gs.group_id = g.id
        GROUP BY g.id ORDER BY g.id`);
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      state: row.state,
      lastCommandId: row.last_command_id,
      restoreApproval: row.restore_approval,
      systemCount: Number(row.system_count),
    }));
  }

  /** The group, its state and where enforcement stands on each of its systems. */
  async get(id: string) {
    const group = await this.dataSource.getRepository(GroupEntity).findOneBy({ id });
    if (!group) throw new NotFoundError('group', id);
    const members = await this.dataSource.getRepository(GroupSystemEntity).findBy({ groupId: id });
    const systems = members.length
      ? await this.dataSource.getRepository(SystemEntity).find({
          where: { id: In(members.map((member) => member.systemId)) },
          order: { id: 'ASC' },
        })
      : [];
    const exemptions = await exemptionsBySystem(this.dataSource.manager, systems.map((system) => system.id));
    const now = new Date();
    const open = await this.dataSource.getRepository(CommandEntity).findOneBy({ groupId: id, approvalStatus: 'awaiting-approval' });
    return {
      id: group.id,
      name: group.name,
      state: group.state,
      lastCommandId: group.lastCommandId,
      restoreApproval: group.restoreApproval,
      /** The restore request waiting for a second security lead, if any (one that ran out of time is not shown). */
      openRestoreRequest:
        open && open.approvalExpiresAt && open.approvalExpiresAt.getTime() > now.getTime()
          ? {
              commandId: open.id,
              requestedBy: open.requestedBy,
              requestedAt: open.requestedAt.toISOString(),
              expiresAt: open.approvalExpiresAt.toISOString(),
              reason: open.reason,
            }
          : null,
      systems: systems.map((system) => systemView(system, exemptions.get(system.id) ?? [], now)),
      createdAt: group.createdAt.toISOString(),
      updatedAt: group.updatedAt.toISOString(),
    };
  }

  private async assertSystemsExist(manager: EntityManager, systemIds: string[]): Promise<void> {
    if (systemIds.length === 0) return;
    const found = await manager.find(SystemEntity, { select: { id: true }, where: { id: In(systemIds) } });
    const known = new Set(found.map((system) => system.id));
    const unknown = systemIds.filter((systemId) => !known.has(systemId));
    if (unknown.length > 0) {
      throw new InvalidReferenceError(`unknown system(s): ${unknown.join(', ')}; register them first`);
    }
  }

  private async insertMembers(manager: EntityManager, groupId: string, systemIds: string[]): Promise<void> {
    if (systemIds.length === 0) return;
    await manager.insert(
      GroupSystemEntity,
      systemIds.map((systemId) => ({ groupId, systemId })),
    );
  }
}
