import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AccessAcknowledgedV1, AccessDriftDetectedV1, SecurityAlertV1 } from '@portcullis/contracts';
import { DataSource, type EntityManager } from 'typeorm';
import { AdapterKeysService, describeSignatureFailure } from '../adapters/adapter-keys.service';
import { AuditLog } from '../audit/audit-log.service';
import { SecurityAlertEntity, SystemEntity } from '../database/entities';

/** A report as the transport decoded it, and its bytes as they arrived (the signature covers those). */
type RawReport = Buffer | null;

function parseRaw(raw: RawReport): unknown {
  if (raw === null) return null;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
}

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
    private readonly keys: AdapterKeysService,
  ) {}

  /**
   * Records an acknowledgement. It counts only if it comes from the adapter registered for the system,
   * signed by a registered key of that adapter, and matches a decision that was made; otherwise it is
   * kept as rejected evidence and audited, and changes nothing.
   */
  async record(ack: AccessAcknowledgedV1, raw: RawReport = null): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const { systemId, adapterId, status } = ack.data;
      // Serialise with decisions about this system, so an ack never races a new generation.
      const system = await manager.findOne(SystemEntity, { where: { id: systemId }, lock: { mode: 'pessimistic_write' } });
      const rejection = system
        ? ((await this.trustRejection(system, ack, raw)) ?? (await this.rejectionReason(manager, ack)))
        : `unknown system "${systemId}"`;
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
  async recordDrift(drift: AccessDriftDetectedV1, raw: RawReport = null): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const { systemId, adapterId } = drift.data;
      const system = await manager.findOne(SystemEntity, { where: { id: systemId }, lock: { mode: 'pessimistic_write' } });
      const rejection = system
        ? ((await this.trustRejection(system, drift, raw)) ?? (await this.rejectionReason(manager, drift)))
        : `unknown system "${systemId}"`;
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

  /**
   * Records that an adapter refused a message on the desired-state topic (forged, tampered, replayed,
   * rolled back, ...). Kept even when the alert itself is not properly signed — marked unverified — because
   * an alert nobody can vouch for is still worth a human's look. A re-delivered alert changes nothing.
   */
  async recordSecurityAlert(alert: SecurityAlertV1, raw: RawReport = null): Promise<void> {
    const { adapterId, systemId, reason, severity, detail, record } = alert.data;
    const signatureProblem = describeSignatureFailure(await this.keys.verify(adapterId, parseRaw(raw)), adapterId);
    const verified = signatureProblem === null;
    await this.dataSource.transaction(async (manager) => {
      const inserted = await manager
        .createQueryBuilder()
        .insert()
        .into(SecurityAlertEntity)
        .values({ messageId: alert.messageId, adapterId, systemId, reason, severity, verified, detail, occurredAt: new Date(alert.occurredAt), receivedAt: new Date(), payload: alert })
        .orIgnore()
        .returning(['messageId'])
        .execute();
      if (inserted.raw.length === 0) return;
      const line = `security alert from adapter ${adapterId}${verified ? '' : ' (UNVERIFIED)'} on ${systemId}: ${reason} (${severity}): ${detail}`;
      if (severity === 'medium') this.log.warn(line);
      else this.log.error(line);
      await this.auditLog.append(manager, {
        actor: `adapter:${adapterId}`,
        action: 'security.alert',
        systemId,
        commandId: record.commandId && /^[0-9a-f-]{36}$/i.test(record.commandId) ? record.commandId : null,
        reason: `${reason}: ${detail}`,
        details: { messageId: alert.messageId, severity, alertReason: reason, verified, signatureProblem, record, reportedAt: alert.occurredAt },
      });
    });
  }

  /** Why a report does not come from the adapter that enforces the system, with its key; null if it does. */
  private async trustRejection(
    system: SystemEntity,
    report: AccessAcknowledgedV1 | AccessDriftDetectedV1,
    raw: RawReport,
  ): Promise<string | null> {
    const { adapterId } = report.data;
    if (system.adapterId !== adapterId) {
      return `adapter "${adapterId}" is not the adapter registered for system "${system.id}" ("${system.adapterId}")`;
    }
    return describeSignatureFailure(await this.keys.verify(adapterId, parseRaw(raw)), adapterId);
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
