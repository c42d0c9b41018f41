import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In, type EntityManager } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { GroupEntity, GroupSystemEntity, SystemEntity } from '../database/entities';
import { AlreadyExistsError, ConflictError, InvalidReferenceError, NotFoundError } from '../errors/domain.errors';
import { systemView } from '../systems/system.view';
import type { CreateGroupRequest, UpdateGroupRequest } from './group.request.dto';

@Injectable()
export class GroupsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async create(request: CreateGroupRequest, actor: string) {
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
        action: 'group.created',
        groupId: request.id,
        details: { after: { name: request.name, systemIds: [...request.systemIds].sort() } },
      });
    });
    return this.get(request.id);
  }

  /**
   * Renames a group or replaces its membership. The membership of a revoked group cannot change: adding
   * or removing a system there would silently revoke or restore it, which only a decision may do.
   */
  async update(id: string, request: UpdateGroupRequest, actor: string) {
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
        action: 'group.updated',
        groupId: id,
        details: { before: { name: group.name, systemIds: before }, after: { name: request.name, systemIds: after } },
      });
    });
    return this.get(id);
  }

  async list() {
    const rows: { id: string; name: string; state: string; last_command_id: string | null; system_count: string }[] =
      await this.dataSource.query(`
        SELECT g.id, g.name, g.state, g.last_command_id, count(gs.system_id) AS system_count
        FROM groups g LEFT JOIN group_systems gs ON gs.group_id = g.id
        GROUP BY g.id ORDER BY g.id`);
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      state: row.state,
      lastCommandId: row.last_command_id,
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
    return {
      id: group.id,
      name: group.name,
      state: group.state,
      lastCommandId: group.lastCommandId,
      systems: systems.map(systemView),
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
