import type { Pool } from 'pg';
import type { SentCommand } from './policy-client';
import { wallClockMs } from './stats';

export interface ObservedCommand extends SentCommand {
  /** Client wall clock when a poll of the policy database first saw every system `enforced`. */
  observedAt: number;
}

/** A command's timing from the policy service's own timestamps, joined with the client's. */
export interface CommandTiming extends ObservedCommand {
  systems: number;
  /**
   * When the service took the decision: commands.requested_at, or for a four-eyes restore commands.decided_at
   * (the approval, in whose transaction the restore is applied; requested_at is then the restore request's).
   */
  requestedAt: number;
  /** The latest, over the command's systems, of the first accepted `enforced` acknowledgement's received_at. */
  lastEnforcedAt: number;
  /**
   * Time to enforce: client request sent → last `enforced` acknowledgement recorded (service timestamp).
   * The request is the one that decides: the revoke, or a restore's approval (see SentCommand).
   */
  tteMs: number;
  /** Restores only: the restore request sent (before the approval) → last `enforced` recorded. */
  restoreTotalMs?: number;
  /** The same, as the client saw it by polling the database (includes commit and poll delay). */
  clientObservedMs: number;
  /** requestedAt → last enforced (what the service alone would report). */
  serviceMs: number;
  /** Where the time went, for the system that was enforced last (see bench/README.md). */
  hops?: Hops;
}

export interface Hops {
  /** Client sent → requestedAt (see CommandTiming): HTTP, authentication, validation, the group lock. */
  request: number;
  /**
   * requestedAt → the decision's audit entry (`group.revoked` / `group.restored`), whose time is taken inside
   * COMMIT, when the database links it into the chain: the decision transaction, its commit included.
   */
  decide: number;
  /** Audit entry → outbox.published_at: the end of the commit, NOTIFY, relay reads the outbox, Kafka send (acks=all), UPDATE. */
  relay: number;
  /**
   * published_at → the adapter built its `enforced` ack: Kafka fetch, signature check, validation, durable
   * saves, the enforcement (a no-op here). (Adapters acknowledge `delivered` only for enforcements slower
   * than `deliveredAckDelayMs`, so there is no timestamp in between to split it.)
   */
  adapter: number;
  /** `enforced` built → recorded by the service (received_at): Kafka send and fetch, the service's consumer and transaction(s). */
  ackBack: number;
}

type Waiter = { sent: SentCommand; resolve: (observed: ObservedCommand) => void; reject: (error: Error) => void; deadline: number };

/**
 * Follows commands until every system of each is `enforced`, by polling the policy service's database
 * (one cheap query per interval for all commands in flight, on the command_targets primary key). The
 * figures themselves come from the service's timestamps afterwards (`timings`); polling only tells the
 * client when to go on, and gives the cross-check `clientObservedMs`.
 */
export class CommandTracker {
  private readonly waiting = new Map<string, Waiter>();
  private timer?: NodeJS.Timeout;
  private polling = false;
  private stopped = false;

  constructor(
    private readonly db: Pool,
    private readonly pollMs = 10,
    private readonly timeoutMs = 180_000,
    private readonly onStop: () => void = () => undefined,
  ) {}

  waitFor(sent: SentCommand): Promise<ObservedCommand> {
    return new Promise((resolve, reject) => {
      this.waiting.set(sent.commandId, { sent, resolve, reject, deadline: Date.now() + this.timeoutMs });
      this.arm();
    });
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  stop(): void {
    if (this.stopped) return;
    this.onStop();
    this.stopped = true;
    clearTimeout(this.timer);
    for (const waiter of this.waiting.values()) waiter.reject(new Error('tracker stopped'));
    this.waiting.clear();
  }

  private arm(): void {
    if (this.timer || this.polling || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.poll();
    }, this.pollMs);
  }

  private async poll(): Promise<void> {
    if (this.waiting.size === 0) return;
    this.polling = true;
    try {
      const ids = [...this.waiting.keys()];
      const { rows } = await this.db.query<{ command_id: string; total: number; enforced: number }>(
        `SELECT command_id, count(*)::int AS total, count(*) FILTER (WHERE status = 'enforced')::int AS enforced
         FROM command_targets WHERE command_id = ANY($1::uuid[]) GROUP BY command_id`,
        [ids],
      );
      const seenAt = wallClockMs();
      for (const row of rows) {
        if (row.total === 0 || row.enforced < row.total) continue;
        const waiter = this.waiting.get(row.command_id)!;
        this.waiting.delete(row.command_id);
        waiter.resolve({ ...waiter.sent, observedAt: seenAt });
      }
      const now = Date.now();
      for (const [id, waiter] of this.waiting) {
        if (now > waiter.deadline) {
          this.waiting.delete(id);
          waiter.reject(new Error(`command ${id} not enforced within ${this.timeoutMs / 1000} s`));
        }
      }
    } catch (error) {
      if (!this.stopped) console.error(`[bench] tracker poll failed: ${(error as Error).message}`);
    } finally {
      this.polling = false;
      if (this.waiting.size > 0) this.arm();
    }
  }
}

/** The highest outbox id so far: messages of a scenario are those above it. */
export async function outboxMark(db: Pool): Promise<string> {
  const { rows } = await db.query<{ id: string | null }>('SELECT max(id)::text AS id FROM outbox');
  return rows[0].id ?? '0';
}

/**
 * Joins observed commands with the service's timestamps: requested_at, and per system the first accepted
 * `enforced` acknowledgement (received_at by the service, occurred_at by the adapter), the `delivered`
 * one and when the relay published the decision.
 */
export async function timings(db: Pool, observed: readonly ObservedCommand[], outboxAfter: string): Promise<CommandTiming[]> {
  if (observed.length === 0) return [];
  const ids = observed.map((command) => command.commandId);
  const ms = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`;
  const { rows } = await db.query<{
    command_id: string;
    system_id: string;
    systems: number;
    requested: number;
    enforced_received: number;
    enforced_occurred: number;
    delivered_occurred: number | null;
    decided: number | null;
  }>(
    `WITH acks AS (
       SELECT command_id, system_id, status, min(occurred_at) AS occurred_at, min(received_at) AS received_at
       FROM acknowledgements
       WHERE command_id = ANY($1::uuid[]) AND accepted AND status IN ('delivered', 'enforced')
       GROUP BY command_id, system_id, status),
     counted AS (
       SELECT command_id, count(*)::int AS systems FROM acks WHERE status = 'enforced' GROUP BY command_id),
     last AS (
       SELECT DISTINCT ON (command_id) command_id, system_id, occurred_at, received_at
       FROM acks WHERE status = 'enforced' ORDER BY command_id, received_at DESC)
     SELECT l.command_id, l.system_id, n.systems,
            ${ms('coalesce(c.decided_at, c.requested_at)')} AS requested,
            ${ms('l.received_at')} AS enforced_received,
            ${ms('l.occurred_at')} AS enforced_occurred,
            ${ms('d.occurred_at')} AS delivered_occurred,
            (SELECT ${ms('max(a.occurred_at)')} FROM audit_entries a
              WHERE a.command_id = l.command_id AND a.action IN ('group.revoked', 'group.restored')) AS decided
     FROM last l
     JOIN counted n ON n.command_id = l.command_id
     JOIN commands c ON c.id = l.command_id
     LEFT JOIN acks d ON d.command_id = l.command_id AND d.system_id = l.system_id AND d.status = 'delivered'`,
    [ids],
  );
  const published = new Map<string, number>();
  const outbox = await db.query<{ payload: string; message_key: string; published: number | null }>(
    `SELECT payload, message_key, ${ms('published_at')} AS published FROM outbox WHERE id > $1::bigint`,
    [outboxAfter],
  );
  const wanted = new Set(ids);
  for (const row of outbox.rows) {
    const commandId = (JSON.parse(row.payload) as { commandId?: string }).commandId;
    if (commandId && wanted.has(commandId) && row.published !== null) published.set(`${commandId}/${row.message_key}`, row.published);
  }
  const byId = new Map(rows.map((row) => [row.command_id, row]));
  return observed.map((command) => {
    const row = byId.get(command.commandId);
    if (!row) throw new Error(`no enforced acknowledgements recorded for command ${command.commandId}`);
    const publishedAt = published.get(`${command.commandId}/${row.system_id}`);
    const hops =
      publishedAt !== undefined && row.decided !== null
        ? {
            request: row.requested - command.sentAt,
            decide: row.decided - row.requested,
            relay: publishedAt - row.decided,
            adapter: row.enforced_occurred - publishedAt,
            ackBack: row.enforced_received - row.enforced_occurred,
          }
        : undefined;
    return {
      ...command,
      systems: row.systems,
      requestedAt: row.requested,
      lastEnforcedAt: row.enforced_received,
      tteMs: row.enforced_received - command.sentAt,
      restoreTotalMs: command.restoreRequest ? row.enforced_received - command.restoreRequest.sentAt : undefined,
      clientObservedMs: command.observedAt - command.sentAt,
      serviceMs: row.enforced_received - row.requested,
      hops,
    };
  });
}
