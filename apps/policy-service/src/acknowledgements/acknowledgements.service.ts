import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type {
  AccessAcknowledgedV1,
  AccessDriftDetectedV1,
  AdapterReportV1,
  SecurityAlertV1,
  SignatureCheck,
} from '@portcullis/contracts';
import { DataSource, type EntityManager } from 'typeorm';
import { AdapterKeysService, describeSignatureFailure } from '../adapters/adapter-keys.service';
import { AuditLog, isUuid, type AuditEntryInput } from '../audit/audit-log.service';
import { explainRefusedCopy } from '../outbox/uncertain-sends';

/** A report as the transport decoded it, with its bytes as they arrived (the signature covers those). */
export interface ReceivedReport {
  report: AdapterReportV1;
  raw: Buffer | null;
}

interface CheckedReport<R extends AdapterReportV1 = AdapterReportV1> {
  report: R;
  signature: SignatureCheck;
}

/** What is known about the (command, system, generation) a report names, read once per batch. */
interface DecisionFacts {
  desiredState: string;
  groupId: string;
}

/** The systems a batch concerns, locked for the transaction, with the adapter registered for each. */
type LockedSystems = ReadonlyMap<string, { adapterId: string; generation: number; desiredState: string }>;

function parseRaw(raw: Buffer | null): unknown {
  if (raw === null) return null;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
}

const factsKey = (commandId: string, systemId: string, generation: number) => `${commandId}/${systemId}/${generation}`;

/**
 * Records what adapters report: acknowledgements, drift reports and security alerts. Every report is kept
 * as evidence, accepted or not; a re-delivered one (same message id) changes nothing.
 *
 * Reports arrive in batches (all those of one fetch from one partition); a batch — or several, handed in
 * together (see `recordReports`) — is recorded in ONE transaction: the systems it concerns are locked once (in id order, like decisions, so the two never
 * deadlock), each report is applied in the order it was published, and the audit entries of the whole
 * batch are appended in one go — one commit, and one turn of the audit chain's lock inside it, per batch
 * instead of per report. Signatures are checked before the transaction (CPU only; keys are cached).
 */
@Injectable()
export class AcknowledgementsService {
  private readonly log = new Logger(AcknowledgementsService.name);
  /** Batches handed in while a transaction records others: the next transaction records them together. */
  private readonly waiting: { checked: CheckedReport[]; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private recording = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
    private readonly keys: AdapterKeysService,
  ) {}

  /**
   * Records a batch. Batches handed in while a transaction runs (the transport consumes every partition at
   * once) are recorded together by the next one: group commit, so that under load the partitions share one
   * transaction and one commit (with its one turn of the audit chain's lock) instead of one each. If a merged
   * transaction fails, each batch of it is recorded alone, so one batch that cannot be recorded fails (and is
   * delivered again) without holding up the others. Order within a system is kept: its reports come from one
   * partition, whose next batch is handed in only after this one resolved.
   */
  async recordReports(received: readonly ReceivedReport[]): Promise<void> {
    if (received.length === 0) return;
    const checked: CheckedReport[] = await Promise.all(
      received.map(async ({ report, raw }) => ({ report, signature: await this.keys.verify(report.data.adapterId, parseRaw(raw)) })),
    );
    await new Promise<void>((resolve, reject) => {
      this.waiting.push({ checked, resolve, reject });
      if (!this.recording) void this.recordWaiting();
    });
  }

  private async recordWaiting(): Promise<void> {
    this.recording = true;
    try {
      // Let the batches of the same fetch (handed in during this turn of the event loop) join.
      await new Promise((resolve) => setImmediate(resolve));
      while (this.waiting.length > 0) {
        const group = this.waiting.splice(0);
        try {
          await this.recordInOneTransaction(group.flatMap((batch) => batch.checked));
          group.forEach((batch) => batch.resolve());
        } catch (error) {
          if (group.length === 1) {
            group[0].reject(error);
            continue;
          }
          this.log.warn(`recording ${group.length} batches together failed (${(error as Error).message}); recording each alone`);
          for (const batch of group) {
            await this.recordInOneTransaction(batch.checked).then(batch.resolve, batch.reject);
          }
        }
      }
    } finally {
      this.recording = false;
    }
  }

  private async recordInOneTransaction(checked: readonly CheckedReport[]): Promise<void> {
    await this.dataSource.transaction(async (manager) => {
      const { systems, facts } = await this.lockSystemsAndReadFacts(manager, checked);
      const verdicts = new Map<CheckedReport, string | null>();
      for (const item of checked) {
        if (item.report.type !== 'adapter.security-alert') {
          verdicts.set(item, this.rejectionReason(item as CheckedReport<AccessAcknowledgedV1 | AccessDriftDetectedV1>, systems, facts));
        }
      }
      const kept = await this.keepEvidence(manager, verdicts);
      const entries: AuditEntryInput[] = [];
      const accepted: AccessAcknowledgedV1[] = [];
      for (const item of checked) {
        const { report } = item;
        if (report.type === 'adapter.security-alert') {
          entries.push(...(await this.applySecurityAlert(manager, item as CheckedReport<SecurityAlertV1>)));
          continue;
        }
        // A re-delivery of a report recorded before (or twice in this batch): evidence once, effect once.
        if (!kept.delete(report.messageId.toLowerCase())) continue; // PostgreSQL returns uuids in lower case
        const rejection = verdicts.get(item) ?? null;
        if (report.type === 'access.acknowledged') {
          entries.push(...this.acknowledgementEntries(report, rejection, systems, facts));
          if (rejection === null) accepted.push(report);
        } else {
          entries.push(...(await this.applyDrift(manager, report, rejection, facts)));
        }
      }
      await this.applyAcknowledgements(manager, accepted);
      await this.auditLog.append(manager, entries);
    });
  }

  /**
   * Locks the systems the batch concerns — serialising with decisions about them, so a report never races a
   * new generation — and reads the decisions its acknowledgements and drift reports name, in one round trip.
   * The locked rows are the current ones (a decision committed while this waited included); the decisions
   * named were committed before their messages were published, so the statement's snapshot holds them.
   */
  private async lockSystemsAndReadFacts(
    manager: EntityManager,
    checked: readonly CheckedReport[],
  ): Promise<{ systems: LockedSystems; facts: ReadonlyMap<string, DecisionFacts> }> {
    const named = checked.flatMap((item) =>
      item.report.type === 'adapter.security-alert'
        ? []
        : [{ commandId: item.report.commandId, systemId: item.report.data.systemId, generation: item.report.generation }],
    );
    if (named.length === 0) return { systems: new Map(), facts: new Map() };
    const ids = [...new Set(named.map((n) => n.systemId))].sort();
    const [row]: {
      systems: { id: string; adapter_id: string; generation: number; desired_state: string }[];
      facts: { command_id: string; system_id: string; generation: number; desired_state: string; group_id: string }[];
    }[] = await manager.query(
      `WITH locked AS (
         SELECT id, adapter_id, generation, desired_state FROM systems WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
       )
       SELECT
         (SELECT coalesce(json_agg(l), '[]') FROM locked l) AS systems,
         (SELECT coalesce(json_agg(f), '[]') FROM (
            SELECT t.command_id, t.system_id, t.generation, t.desired_state, c.group_id
            FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS n(command_id, system_id, generation)
            JOIN command_targets t ON t.command_id = n.command_id AND t.system_id = n.system_id AND t.generation = n.generation AND t.changed
            JOIN commands c ON c.id = t.command_id) f) AS facts`,
      [ids, named.map((n) => n.commandId), named.map((n) => n.systemId), named.map((n) => n.generation)],
    );
    return {
      systems: new Map(
        row.systems.map((system) => [system.id, { adapterId: system.adapter_id, generation: Number(system.generation), desiredState: system.desired_state }]),
      ),
      facts: new Map(
        row.facts.map((fact) => [
          factsKey(fact.command_id, fact.system_id, Number(fact.generation)),
          { desiredState: fact.desired_state, groupId: fact.group_id },
        ]),
      ),
    };
  }

  /**
   * Why a report does not count, or null when it does: it must come from the adapter registered for
   * the system, signed by a registered key of that adapter, and match a decision that was made.
   */
  private rejectionReason(
    item: CheckedReport<AccessAcknowledgedV1 | AccessDriftDetectedV1>,
    systems: LockedSystems,
    facts: ReadonlyMap<string, DecisionFacts>,
  ): string | null {
    const { report, signature } = item;
    const { systemId, adapterId } = report.data;
    const system = systems.get(systemId);
    if (!system) return `unknown system "${systemId}"`;
    if (system.adapterId !== adapterId) {
      return `adapter "${adapterId}" is not the adapter registered for system "${systemId}" ("${system.adapterId}")`;
    }
    const signatureProblem = describeSignatureFailure(signature, adapterId);
    if (signatureProblem !== null) return signatureProblem;
    const decision = facts.get(factsKey(report.commandId, systemId, report.generation));
    if (!decision) return `no decision for system "${systemId}" at generation ${report.generation} in command ${report.commandId}`;
    if (decision.desiredState !== report.data.desiredState) {
      return `acknowledges "${report.data.desiredState}" but generation ${report.generation} decided "${decision.desiredState}"`;
    }
    return null;
  }

  /**
   * Keeps every acknowledgement and drift report of the batch as evidence, accepted or not, in one
   * statement; returns the message ids that were new (the others are re-deliveries).
   */
  private async keepEvidence(manager: EntityManager, verdicts: ReadonlyMap<CheckedReport, string | null>): Promise<Set<string>> {
    if (verdicts.size === 0) return new Set();
    const rows = [...verdicts].map(([item, rejection]) => {
      const report = item.report as AccessAcknowledgedV1 | AccessDriftDetectedV1;
      return { report, status: report.type === 'access.acknowledged' ? report.data.status : 'drift', rejection };
    });
    const inserted: { message_id: string }[] = await manager.query(
      `INSERT INTO acknowledgements
         (message_id, command_id, system_id, generation, adapter_id, status, accepted, rejection_reason, occurred_at, payload)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::boolean[], $8::text[],
                            $9::timestamptz[], $10::jsonb[])
       ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
      [
        rows.map((row) => row.report.messageId),
        rows.map((row) => row.report.commandId),
        rows.map((row) => row.report.data.systemId),
        rows.map((row) => row.report.generation),
        rows.map((row) => row.report.data.adapterId),
        rows.map((row) => row.status),
        rows.map((row) => row.rejection === null),
        rows.map((row) => row.rejection),
        rows.map((row) => row.report.occurredAt),
        rows.map((row) => JSON.stringify(row.report)),
      ],
    );
    return new Set(inserted.map((row) => row.message_id));
  }

  /** The audit entries of one new acknowledgement: accepted (with its status) or rejected, and outdated. */
  private acknowledgementEntries(
    ack: AccessAcknowledgedV1,
    rejection: string | null,
    systems: LockedSystems,
    facts: ReadonlyMap<string, DecisionFacts>,
  ): AuditEntryInput[] {
    const { systemId, adapterId, status } = ack.data;
    const groupId = facts.get(factsKey(ack.commandId, systemId, ack.generation))?.groupId ?? null;
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
    const entry = { actor: `adapter:${adapterId}`, systemId, groupId, commandId: ack.commandId, details: evidence };
    if (rejection !== null) {
      this.log.warn(`rejected acknowledgement ${ack.messageId} from ${adapterId}: ${rejection}`);
      return [{ ...entry, action: 'acknowledgement.rejected', reason: rejection }];
    }
    const recorded: AuditEntryInput[] = [{ ...entry, action: `acknowledgement.${status}` }];
    const system = systems.get(systemId)!;
    if (status === 'enforced' && ack.generation < system.generation && ack.data.desiredState !== system.desiredState) {
      // An adapter just enforced a decision that was overtaken: the target is now out of its desired state.
      // It happens when an adapter acts on an old decision (a replayed one, say) before the newer one
      // reaches it; it converges when it does. Worth a look either way.
      this.log.warn(`adapter ${adapterId} enforced outdated generation ${ack.generation} (${ack.data.desiredState}) on ${systemId}; current: ${system.generation} (${system.desiredState})`);
      recorded.push({
        ...entry,
        action: 'acknowledgement.outdated',
        reason: `enforced generation ${ack.generation} (${ack.data.desiredState}) while generation ${system.generation} (${system.desiredState}) is current`,
      });
    }
    return recorded;
  }

  /**
   * Moves each (system, generation) the accepted acknowledgements name to where they leave it, in one
   * set-based statement. Applied one by one, in order, acknowledgements of one (system, generation)
   * end where the last of them that is not `delivered` puts them — a later `delivered` changes nothing
   * once the target moved past `pending` — or, if all are `delivered`, where the last of those does.
   * The enforced generation is raised by any `enforced` among them.
   */
  private async applyAcknowledgements(manager: EntityManager, accepted: readonly AccessAcknowledgedV1[]): Promise<void> {
    if (accepted.length === 0) return;
    const outcomes = new Map<string, { ack: AccessAcknowledgedV1; enforced: boolean }>();
    for (const ack of accepted) {
      const key = `${ack.data.systemId}/${ack.generation}`;
      const current = outcomes.get(key);
      const enforced = (current?.enforced ?? false) || ack.data.status === 'enforced';
      if (!current || ack.data.status !== 'delivered' || current.ack.data.status === 'delivered') outcomes.set(key, { ack, enforced });
      else current.enforced = enforced;
    }
    const rows = [...outcomes.values()];
    const column = <T>(pick: (ack: AccessAcknowledgedV1) => T) => rows.map((row) => pick(row.ack));
    // Two tables, one statement: the parts share a snapshot, and neither reads what the other writes.
    await manager.query(
      `WITH a AS (
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::boolean[], $6::int[], $7::int[], $8::text[],
                              $9::timestamptz[], $10::boolean[])
           AS a(system_id, generation, status, detail, will_retry, principals_changed, sessions_terminated, adapter_id, occurred_at, enforced)
       ), targets AS (
         UPDATE command_targets t
         SET status = a.status, detail = a.detail, will_retry = a.will_retry, principals_changed = a.principals_changed,
             sessions_terminated = a.sessions_terminated, adapter_id = a.adapter_id, updated_at = now()
         FROM a
         WHERE t.system_id = a.system_id AND t.generation = a.generation AND t.status <> 'superseded'
           AND (a.status <> 'delivered' OR t.status = 'pending')
       )
       UPDATE systems s
       SET enforcement_status = CASE WHEN a.status = 'delivered' AND s.enforcement_status <> 'pending' THEN s.enforcement_status ELSE a.status END,
           enforcement_detail = CASE WHEN a.status = 'delivered' AND s.enforcement_status <> 'pending' THEN s.enforcement_detail ELSE a.detail END,
           enforced_generation = CASE WHEN a.enforced THEN GREATEST(s.enforced_generation, a.generation) ELSE s.enforced_generation END,
           acknowledged_by = a.adapter_id, last_acknowledged_at = a.occurred_at, updated_at = now()
       FROM a
       WHERE s.id = a.system_id AND s.generation = a.generation`,
      [
        column((ack) => ack.data.systemId),
        column((ack) => ack.generation),
        column((ack) => ack.data.status),
        column((ack) => ack.data.detail),
        column((ack) => ack.data.willRetry ?? null),
        column((ack) => ack.data.principalsChanged ?? null),
        column((ack) => ack.data.sessionsTerminated ?? null),
        column((ack) => ack.data.adapterId),
        column((ack) => ack.occurredAt),
        rows.map((row) => row.enforced),
      ],
    );
  }

  /**
   * An adapter found access restored out of band. Kept in the history and shown on the system; the
   * adapter's re-enforcement arrives as a normal acknowledgement right after.
   */
  private async applyDrift(
    manager: EntityManager,
    drift: AccessDriftDetectedV1,
    rejection: string | null,
    facts: ReadonlyMap<string, DecisionFacts>,
  ): Promise<AuditEntryInput[]> {
    const { systemId, adapterId } = drift.data;
    if (rejection !== null) {
      this.log.warn(`rejected drift report ${drift.messageId} from ${adapterId}: ${rejection}`);
      return [
        {
          actor: `adapter:${adapterId}`,
          action: 'drift.rejected',
          systemId,
          commandId: drift.commandId,
          reason: rejection,
          details: { messageId: drift.messageId, generation: drift.generation, detail: drift.data.detail },
        },
      ];
    }
    this.log.warn(`drift on ${systemId} reported by ${adapterId}: ${drift.data.detail}`);
    await manager.query(`UPDATE systems SET last_drift_at = $2, last_drift_detail = $3, updated_at = now() WHERE id = $1`, [
      systemId,
      drift.occurredAt,
      drift.data.detail,
    ]);
    return [
      {
        actor: `adapter:${adapterId}`,
        action: 'drift.detected',
        systemId,
        groupId: facts.get(factsKey(drift.commandId, systemId, drift.generation))?.groupId ?? null,
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
      },
    ];
  }

  /**
   * An adapter refused a message on the desired-state topic (forged, tampered, replayed, rolled back,
   * ...). Kept even when the alert itself is not properly signed — marked unverified — because an alert
   * nobody can vouch for is still worth a human's look.
   */
  private async applySecurityAlert(manager: EntityManager, item: CheckedReport<SecurityAlertV1>): Promise<AuditEntryInput[]> {
    const alert = item.report;
    const { adapterId, systemId, reason, severity, detail, record } = alert.data;
    const signatureProblem = describeSignatureFailure(item.signature, adapterId);
    const verified = signatureProblem === null;
    // A copy of a message the service itself may have sent twice is refused as replayed or rolled back too.
    // Only a verified alert is explained: an adapter reports those reasons after checking the record.
    const explanation =
      verified && (reason === 'replayed' || reason === 'rolled-back') ? await explainRefusedCopy(manager, record.messageId, systemId) : null;
    const inserted: unknown[] = await manager.query(
      `INSERT INTO security_alerts (message_id, adapter_id, system_id, reason, severity, verified, detail, occurred_at, payload, explanation)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (message_id) DO NOTHING RETURNING message_id`,
      [alert.messageId, adapterId, systemId, reason, severity, verified, detail, alert.occurredAt, JSON.stringify(alert), explanation],
    );
    if (inserted.length === 0) return [];
    const line =
      `security alert from adapter ${adapterId}${verified ? '' : ' (UNVERIFIED)'} on ${systemId}: ${reason} (${severity}): ${detail}` +
      (explanation ? ` — explained: ${explanation}` : '');
    if (severity === 'medium' || explanation) this.log.warn(line);
    else this.log.error(line);
    return [
      {
        actor: `adapter:${adapterId}`,
        action: 'security.alert',
        systemId,
        commandId: record.commandId && isUuid(record.commandId) ? record.commandId : null,
        reason: `${reason}: ${detail}`,
        details: {
          messageId: alert.messageId,
          severity,
          alertReason: reason,
          verified,
          signatureProblem,
          record,
          reportedAt: alert.occurredAt,
          ...(explanation ? { explanation } : {}),
        },
      },
    ];
  }
}
