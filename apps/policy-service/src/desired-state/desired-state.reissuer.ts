import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { AccessState } from '@portcullis/contracts';
import { DataSource } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import type { CommandAction } from '../database/entities';
import { OutboxWriter } from '../outbox/outbox.writer';
import { exemptionValidAt } from '../systems/exemptions';
import { SystemAccessMessageFactory } from './system-access-message.factory';

const BATCH_SIZE = 500;
/** The first pass runs this long after the application has started (the rest every quarter of the validity, at most hourly). */
const FIRST_PASS_DELAY_MS = 1_000;

interface DueSystem {
  id: string;
  kind: string;
  adapter_id: string;
  generation: string;
  desired_state: AccessState;
  command_id: string;
  group_id: string;
  action: CommandAction;
  reason: string;
  incident_ref: string | null;
  requested_by: string;
  acknowledge_by: Date;
  exempt_principals: string[];
}

/**
 * Keeps every system's current decision valid on the desired-state topic. Signed decisions expire
 * (`commandTtlSeconds`) so that a captured one cannot be replayed for ever; a revocation, though, may
 * rightly stay in force for weeks, and an adapter that starts fresh must still find a valid decision for
 * its systems. So once half of a decision's validity has passed, the same decision (same command and
 * generation, current break-glass exemptions) is published again with a new message id and expiry.
 * Adapters take a re-issue of the generation they hold as a renewal, not as a new decision.
 *
 * The age of a decision is counted from its approval (restores with four eyes) or request, never later than the time
 * it was signed, so a re-issue is never late. Replicas may both re-issue a system; the duplicate is harmless.
 */
@Injectable()
export class DesiredStateReissuer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(DesiredStateReissuer.name);
  private timer?: NodeJS.Timeout;
  private firstPass?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly outbox: OutboxWriter,
    private readonly messages: SystemAccessMessageFactory,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  onApplicationBootstrap(): void {
    // A quarter of the validity, at most hourly: a decision is re-issued between 1/2 and 3/4 of its life.
    const everyMs = Math.min((this.config.commandTtlSeconds * 1000) / 4, 3_600_000);
    const pass = () => {
      this.running ??= this.reissueDue()
        .catch((error: unknown) => this.log.error(`could not re-issue decisions: ${(error as Error).message}`))
        .finally(() => {
          this.running = undefined;
        });
    };
    // The first pass right after start, not an interval later: what fell due while no replica ran, or
    // was made due by a migration (1764400700000-ReissueForRouting), is re-issued within seconds.
    this.firstPass = setTimeout(pass, FIRST_PASS_DELAY_MS);
    this.firstPass.unref();
    this.timer = setInterval(pass, everyMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearTimeout(this.firstPass);
    clearInterval(this.timer);
    await this.running;
  }

  /** Re-issues every decision past half of its validity; returns how many were re-issued. */
  async reissueDue(now = new Date()): Promise<number> {
    let total = 0;
    for (;;) {
      const count = await this.reissueBatch(now);
      total += count;
      if (count < BATCH_SIZE) break;
    }
    if (total > 0) this.log.log(`re-issued the current decision of ${total} system(s) before it expires`);
    return total;
  }

  /**
   * Re-issues the current decision of these systems now, whatever their age: the watch found a record on
   * the topic that is not the latest the service published (forged, replayed, a tombstone), which
   * compaction could otherwise keep as the system's decision. Returns how many were re-issued.
   */
  reissueNow(systemIds: readonly string[], now = new Date()): Promise<number> {
    if (systemIds.length === 0) return Promise.resolve(0);
    return this.reissue(now, 's.id = ANY($2::text[])', [[...systemIds]]);
  }

  private reissueBatch(now: Date): Promise<number> {
    const cutoff = new Date(now.getTime() - (this.config.commandTtlSeconds * 1000) / 2);
    return this.reissue(now, 'COALESCE(r.reissued_at, c.decided_at, c.requested_at) < $2', [cutoff]);
  }

  private reissue(now: Date, condition: string, parameters: unknown[]): Promise<number> {
    return this.dataSource.transaction(async (manager) => {
      // Locks the systems, so a decision made meanwhile waits, and its generation is the one re-issued.
      const due: DueSystem[] = await manager.query(
        `SELECT s.id, s.kind, s.adapter_id, s.generation, s.desired_state,
                c.id AS command_id, c.group_id, c.action, c.reason, c.incident_ref, c.requested_by, c.acknowledge_by,
                ARRAY(SELECT e.principal FROM system_exemptions e
                      WHERE e.system_id = s.id AND ${exemptionValidAt('e', '$1')}
                      ORDER BY e.principal) AS exempt_principals
         FROM systems s
         JOIN commands c ON c.id = s.desired_command_id
         LEFT JOIN desired_state_reissues r ON r.system_id = s.id AND r.generation = s.generation
         WHERE ${condition}
         ORDER BY s.id
         LIMIT ${BATCH_SIZE}
         FOR UPDATE OF s SKIP LOCKED`,
        [now, ...parameters],
      );
      if (due.length === 0) return 0;
      await this.outbox.enqueue(
        manager,
        due.map((row) =>
          this.messages.build(
            {
              command: {
                id: row.command_id,
                groupId: row.group_id,
                action: row.action,
                reason: row.reason,
                incidentRef: row.incident_ref,
                requestedBy: row.requested_by,
                acknowledgeBy: row.acknowledge_by,
              },
              system: { id: row.id, kind: row.kind, adapterId: row.adapter_id },
              generation: Number(row.generation),
              desiredState: row.desired_state,
              exemptPrincipals: row.exempt_principals,
            },
            now,
          ),
        ),
      );
      await manager.query(
        `INSERT INTO desired_state_reissues (system_id, generation, reissued_at)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[])
         ON CONFLICT (system_id) DO UPDATE SET generation = EXCLUDED.generation, reissued_at = EXCLUDED.reissued_at`,
        [due.map((row) => row.id), due.map((row) => row.generation), due.map(() => now)],
      );
      return due.length;
    });
  }
}
