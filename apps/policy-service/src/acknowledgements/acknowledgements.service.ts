import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AccessAcknowledgedV1, AccessDriftDetectedV1 } from '@portcullis/contracts';
import { DataSource, type EntityManager } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { SystemEntity } from '../database/entities';

/**
 * Records what adapters report about each (command, system). Every acknowledgement is kept as evidence,
 * accepted or not; a re-delivered one (same message id) changes nothing.
 */
@Injectable()
export class AcknowledgementsService {
  private readonly log = new Logger(AcknowledgementsService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async record(ack: AccessAcknowledgedV1): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const { systemId, adapterId, status } = ack.data;
      // Serialise with decisions about this system, so an ack never races a new generation.
      const system = await manager.findOne(SystemEntity, { where: { id: systemId }, lock: { mode: 'pessimistic_write' } });
      const rejection = system ? await this.rejectionReason(manager, ack) : `unknown system "${systemId}"`;
      const inserted = await manager.query(
        `INSERT INTO acknowledgements
           (message_id, command_id, system_id, generation, adapter_id, status, accepted, rejection_reason, occurred_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
        [
          ack.messageId,
          ack.commandId,
          systemId,
          ack.generation,
          adapterId,
          status,
          rejection === null,
          rejection,
          ack.occurredAt,
          JSON.stringify(ack),
        ],
      );
      if (inserted.length === 0) return; // re-delivery of an acknowledgement already recorded

      const groupId = await this.groupOf(manager, ack.commandId);
      const evidence = {
        messageId: ack.messageId,
        generation: ack.generation,
        desiredState: ack.data.desiredState,
        status,
        detail: ack.data.detail,
        willRetry: ack.data.willRetry ?? null,
        principalsChanged: ack.data.principalsChanged ?? null,
        sessionsTerminated: ack.data.sessionsTerminated ?? null,
        reportedAt: ack.occurredAt,
      };
      if (rejection !== null) {
        this.log.warn(`rejected acknowledgement ${ack.messageId} from ${adapterId}: ${rejection}`);
        await this.auditLog.append(manager, {
          actor: `adapter:${adapterId}`,
          action: 'acknowledgement.rejected',
          systemId,
          groupId,
          commandId: ack.commandId,
          reason: rejection,
          details: evidence,
        });
        return;
      }

      await manager.query(
        `UPDATE command_targets
         SET status = $3, detail = $4, will_retry = $5, principals_changed = $6, sessions_terminated = $7,
             adapter_id = $8, updated_at = now()
         WHERE system_id = $1 AND generation = $2 AND status <> 'superseded'
           AND ($3 <> 'delivered' OR status = 'pending')`,
        [
          systemId,
          ack.generation,
          status,
          ack.data.detail,
          ack.data.willRetry ?? null,
          ack.data.principalsChanged ?? null,
          ack.data.sessionsTerminated ?? null,
          adapterId,
        ],
      );
      await manager.query(
        `UPDATE systems
         SET enforcement_status = CASE WHEN $3 = 'delivered' AND enforcement_status <> 'pending' THEN enforcement_status ELSE $3 END,
             enforcement_detail = $4,
             enforced_generation = CASE WHEN $3 = 'enforced' THEN GREATEST(enforced_generation, $2) ELSE enforced_generation END,
             acknowledged_by = $5, last_acknowledged_at = $6, updated_at = now()
         WHERE id = $1 AND generation = $2`,
        [systemId, ack.generation, status, ack.data.detail, adapterId, ack.occurredAt],
      );
      await this.auditLog.append(manager, {
        actor: `adapter:${adapterId}`,
        action: `acknowledgement.${status}`,
        systemId,
        groupId,
        commandId: ack.commandId,
        details: evidence,
      });
    });
  }

  /**
   * Records that an adapter found access restored out of band. Kept in the history and shown on the
   * system; the adapter's re-enforcement arrives as a normal acknowledgement right after.
   */
  async recordDrift(drift: AccessDriftDetectedV1): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const { systemId, adapterId } = drift.data;
      const system = await manager.findOne(SystemEntity, { where: { id: systemId }, lock: { mode: 'pessimistic_write' } });
      const rejection = system ? await this.rejectionReason(manager, drift) : `unknown system "${systemId}"`;
      const inserted = await manager.query(
        `INSERT INTO acknowledgements
           (message_id, command_id, system_id, generation, adapter_id, status, accepted, rejection_reason, occurred_at, payload)
         VALUES ($1, $2, $3, $4, $5, 'drift', $6, $7, $8, $9)
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
        [drift.messageId, drift.commandId, systemId, drift.generation, adapterId, rejection === null, rejection, drift.occurredAt, JSON.stringify(drift)],
      );
      if (inserted.length === 0) return;
      if (rejection !== null) {
        this.log.warn(`rejected drift report ${drift.messageId} from ${adapterId}: ${rejection}`);
        await this.auditLog.append(manager, {
          actor: `adapter:${adapterId}`,
          action: 'drift.rejected',
          systemId,
          commandId: drift.commandId,
          reason: rejection,
          details: { messageId: drift.messageId, generation: drift.generation, detail: drift.data.detail },
        });
        return;
      }
      this.log.warn(`drift on ${drift.data.systemId} reported by ${drift.data.adapterId}: ${drift.data.detail}`);
      await manager.query(
        `UPDATE systems SET last_drift_at = $2, last_drift_detail = $3, updated_at = now() WHERE id = $1`,
        [drift.data.systemId, drift.occurredAt, drift.data.detail],
      );
      await this.auditLog.append(manager, {
        actor: `adapter:${drift.data.adapterId}`,
        action: 'drift.detected',
        systemId: drift.data.systemId,
        groupId: await this.groupOf(manager, drift.commandId),
        commandId: drift.commandId,
        details: {
          messageId: drift.messageId,
          generation: drift.generation,
          desiredState: drift.data.desiredState,
          observedState: drift.data.observedState,
          detail: drift.data.detail,
          principals: drift.data.principals ?? [],
          reportedAt: drift.occurredAt,
        },
      });
    });
  }

  /** Why a report cannot be accepted, or null when it matches a decision that was made. */
  private async rejectionReason(manager: EntityManager, ack: AccessAcknowledgedV1 | AccessDriftDetectedV1): Promise<string | null> {
    const rows: { desired_state: string }[] = await manager.query(
      `SELECT desired_state FROM command_targets WHERE command_id = $1 AND system_id = $2 AND generation = $3 AND changed`,
      [ack.commandId, ack.data.systemId, ack.generation],
    );
    if (rows.length === 0) {
      return `no decision for system "${ack.data.systemId}" at generation ${ack.generation} in command ${ack.commandId}`;
    }
    if (rows[0].desired_state !== ack.data.desiredState) {
      return `acknowledges "${ack.data.desiredState}" but generation ${ack.generation} decided "${rows[0].desired_state}"`;
    }
    return null;
  }

  private async groupOf(manager: EntityManager, commandId: string): Promise<string | null> {
    const rows: { group_id: string }[] = await manager.query('SELECT group_id FROM commands WHERE id = $1', [commandId]);
    return rows[0]?.group_id ?? null;
  }
}
