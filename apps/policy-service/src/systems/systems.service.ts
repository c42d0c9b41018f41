import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { SystemEntity } from '../database/entities';
import { AlreadyExistsError, NotFoundError } from '../errors/domain.errors';
import type { RegisterSystemRequest } from './register-system.request.dto';
import { systemView, type SystemView } from './system.view';

@Injectable()
export class SystemsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async register(request: RegisterSystemRequest, actor: string): Promise<SystemView> {
    return this.dataSource.transaction(async (manager) => {
      const inserted = await manager.query(
        `INSERT INTO systems (id, name, kind, exempt_principals) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [request.id, request.name, request.kind, request.exemptPrincipals ?? []],
      );
      if (inserted.length === 0) throw new AlreadyExistsError('system', request.id);
      await this.auditLog.append(manager, {
        actor,
        action: 'system.registered',
        systemId: request.id,
        details: { after: { name: request.name, kind: request.kind, exemptPrincipals: request.exemptPrincipals ?? [] } },
      });
      return systemView(await manager.findOneByOrFail(SystemEntity, { id: request.id }));
    });
  }

  async list(): Promise<SystemView[]> {
    const systems = await this.dataSource.getRepository(SystemEntity).find({ order: { id: 'ASC' } });
    return systems.map(systemView);
  }

  async get(id: string): Promise<SystemView & { groups: string[] }> {
    const system = await this.dataSource.getRepository(SystemEntity).findOneBy({ id });
    if (!system) throw new NotFoundError('system', id);
    const groups: { group_id: string }[] = await this.dataSource.query(
      'SELECT group_id FROM group_systems WHERE system_id = $1 ORDER BY group_id',
      [id],
    );
    return { ...systemView(system), groups: groups.map((row) => row.group_id) };
  }
}
