import { BadRequestException, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { MAX_EXEMPT_PRINCIPALS } from '@portcullis/contracts';
import { AuditLog } from '../audit/audit-log.service';
import { SystemEntity, SystemExemptionEntity } from '../database/entities';
import { AlreadyExistsError, ConflictError, NotFoundError } from '../errors/domain.errors';
import type { AddExemptionRequest, RemoveExemptionRequest } from './exemption.request.dto';
import { exemptionChangeRefusal, exemptionsBySystem, exemptionValidAt, exemptionView, type ExemptionView } from './exemptions';
import type { RegisterSystemRequest } from './register-system.request.dto';
import { systemView, type SystemView } from './system.view';

/** Who changes the registry, as the audit history records it. */
export interface RegistryActor {
  /** `user:<sub>`. */
  actor: string;
  /** The client address of the request. */
  sourceAddress?: string | null;
}

export const REGISTERED_EXEMPTION_REASON = 'registered with the system';

@Injectable()
export class SystemsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async register(request: RegisterSystemRequest, by: RegistryActor): Promise<SystemView> {
    return this.dataSource.transaction(async (manager) => {
      const inserted = await manager.query(
        `INSERT INTO systems (id, name, kind, adapter_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [request.id, request.name, request.kind, request.adapterId],
      );
      if (inserted.length === 0) throw new AlreadyExistsError('system', request.id);
      // Principals given at registration become exemptions like any other: explicit, attributed, visible.
      const exemptPrincipals = [...(request.exemptPrincipals ?? [])].sort();
      if (exemptPrincipals.length) {
        await manager.insert(
          SystemExemptionEntity,
          exemptPrincipals.map((principal) => ({
            systemId: request.id,
            principal,
            reason: REGISTERED_EXEMPTION_REASON,
            createdBy: by.actor,
            expiresAt: null,
          })),
        );
      }
      const view = systemView(
        await manager.findOneByOrFail(SystemEntity, { id: request.id }),
        await manager.find(SystemExemptionEntity, { where: { systemId: request.id } }),
      );
      await this.auditLog.append(manager, {
        actor: by.actor,
        sourceAddress: by.sourceAddress,
        action: 'system.registered',
        systemId: request.id,
        details: { after: { name: request.name, kind: request.kind, adapterId: request.adapterId, exemptPrincipals } },
      });
      return view;
    });
  }

  async list(): Promise<SystemView[]> {
    const systems = await this.dataSource.getRepository(SystemEntity).find({ order: { id: 'ASC' } });
    const exemptions = await exemptionsBySystem(this.dataSource.manager, systems.map((system) => system.id));
    const now = new Date();
    return systems.map((system) => systemView(system, exemptions.get(system.id) ?? [], now));
  }

  async get(id: string): Promise<SystemView & { groups: string[] }> {
    const system = await this.dataSource.getRepository(SystemEntity).findOneBy({ id });
    if (!system) throw new NotFoundError('system', id);
    const groups: { group_id: string }[] = await this.dataSource.query(
      'SELECT group_id FROM group_systems WHERE system_id = $1 ORDER BY group_id',
      [id],
    );
    const exemptions = await this.dataSource.getRepository(SystemExemptionEntity).findBy({ systemId: id });
    return { ...systemView(system, exemptions), groups: groups.map((row) => row.group_id) };
  }

  /** Every exemption of the system, expired ones included (marked `expired`), by principal. */
  async listExemptions(systemId: string): Promise<ExemptionView[]> {
    const system = await this.dataSource.getRepository(SystemEntity).findOneBy({ id: systemId });
    if (!system) throw new NotFoundError('system', systemId);
    const exemptions = await this.dataSource.getRepository(SystemExemptionEntity).find({
      where: { systemId },
      order: { principal: 'ASC' },
    });
    const now = new Date();
    return exemptions.map((exemption) => exemptionView(exemption, now));
  }

  /**
   * Exempts a principal on a system, or replaces its exemption (new reason and expiry). `created` says
   * which. Takes effect with the next decision published for the system.
   */
  async addExemption(
    systemId: string,
    request: AddExemptionRequest,
    by: RegistryActor,
  ): Promise<{ created: boolean; exemption: ExemptionView }> {
    const now = new Date();
    // Absent or null: no expiry.
    const expiresAt = request.expiresAt == null ? null : new Date(request.expiresAt);
    if (expiresAt && expiresAt.getTime() <= now.getTime()) {
      throw new BadRequestException('expiresAt must be in the future');
    }
    return this.dataSource.transaction(async (manager) => {
      const system = await this.lockSystem(manager, systemId);
      const current = await manager.findOne(SystemExemptionEntity, { where: { systemId, principal: request.principal } });
      const refusal = exemptionChangeRefusal(system.desiredState, current, { expiresAt }, now);
      if (refusal) throw new ConflictError(`system "${systemId}" is revoked: changing the exemption of "${request.principal}" ${refusal}`);
      // Every decision about the system carries its valid exemptions, and the contract caps them: one more
      // would make the system impossible to decide about.
      const [{ others }]: { others: number }[] = await manager.query(
        `SELECT count(*)::int AS others FROM system_exemptions e WHERE e.system_id = $1 AND e.principal <> $2 AND ${exemptionValidAt('e', '$3')}`,
        [systemId, request.principal, now],
      );
      if (others >= MAX_EXEMPT_PRINCIPALS) {
        throw new ConflictError(
          `system "${systemId}" has ${others} valid exemptions, the most a decision can carry (${MAX_EXEMPT_PRINCIPALS}): remove one first`,
        );
      }
      const next = { principal: request.principal, reason: request.reason, createdBy: by.actor, createdAt: now, expiresAt };
      await manager.query(
        `INSERT INTO system_exemptions (system_id, principal, reason, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (system_id, principal) DO UPDATE
           SET reason = EXCLUDED.reason, created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at,
               expires_at = EXCLUDED.expires_at`,
        [systemId, next.principal, next.reason, next.createdBy, now, expiresAt],
      );
      const after = exemptionView(next, now);
      await this.auditLog.append(manager, {
        actor: by.actor,
        sourceAddress: by.sourceAddress,
        action: current ? 'system.exemption-changed' : 'system.exemption-added',
        systemId,
        reason: request.reason,
        incidentRef: request.incidentRef,
        details: {
          principal: request.principal,
          systemState: system.desiredState,
          before: current ? exemptionView(current, now) : null,
          after,
        },
      });
      return { created: current === null, exemption: after };
    });
  }

  /**
   * Removes a principal's exemption. Refused (409) while the system is revoked and the exemption still
   * valid: see `exemptionChangeRefusal` for why.
   */
  async removeExemption(
    systemId: string,
    principal: string,
    request: RemoveExemptionRequest,
    by: RegistryActor,
  ): Promise<{ removed: ExemptionView }> {
    const now = new Date();
    return this.dataSource.transaction(async (manager) => {
      // The system row is locked, so no decision on it can be made (and published with this exemption)
      // between the check and the removal.
      const system = await this.lockSystem(manager, systemId);
      const current = await manager.findOne(SystemExemptionEntity, { where: { systemId, principal } });
      if (!current) throw new NotFoundError(`exemption of system "${systemId}" for principal`, principal);
      const refusal = exemptionChangeRefusal(system.desiredState, current, null, now);
      if (refusal) throw new ConflictError(`system "${systemId}" is revoked: removing the exemption of "${principal}" ${refusal}`);
      await manager.delete(SystemExemptionEntity, { systemId, principal });
      const before = exemptionView(current, now);
      await this.auditLog.append(manager, {
        actor: by.actor,
        sourceAddress: by.sourceAddress,
        action: 'system.exemption-removed',
        systemId,
        reason: request.reason,
        incidentRef: request.incidentRef,
        details: { principal, systemState: system.desiredState, before, after: null },
      });
      return { removed: before };
    });
  }

  private async lockSystem(manager: EntityManager, systemId: string): Promise<SystemEntity> {
    const system = await manager.findOne(SystemEntity, { where: { id: systemId }, lock: { mode: 'pessimistic_write' } });
    if (!system) throw new NotFoundError('system', systemId);
    return system;
  }
}
