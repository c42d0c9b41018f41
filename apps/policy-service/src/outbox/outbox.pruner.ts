import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import {
  DEFAULT_OUTBOX_PRUNE_INTERVAL_MS,
  DEFAULT_OUTBOX_RETENTION_HOURS,
  POLICY_SERVICE_CONFIG,
  type PolicyServiceConfig,
} from '../config/policy-service.config';

/** Rows deleted per statement: short transactions, bounded locks and WAL per statement. */
export const PRUNE_BATCH_SIZE = 5_000;

export interface OutboxPruningHealth {
  /** 0: published rows are kept for ever. */
  retentionHours: number;
  /** When the last prune finished (successfully), and how many rows it deleted. */
  lastPrunedAt: string | null;
  lastDeleted: number | null;
  /** The last prune's failure, until one succeeds again. */
  lastError: string | null;
}

/**
 * Deletes outbox rows published more than `outboxRetentionHours` ago, so the table does not grow for ever
 * (every decision writes one row per system). Nothing reads published rows: the relay and the health
 * backlog only look at unpublished ones, re-issues are built from `systems`/`commands`, and the decisions
 * watch recognises the service's records by their signature (or `PublishedRecords`, in memory). Rows not
 * yet published are never deleted, however old.
 *
 * Runs at start and then every `outboxPruneIntervalMs`, in batches of `PRUNE_BATCH_SIZE` rows (one
 * statement each) until a batch comes back short. Every replica prunes; deleting is idempotent, and
 * `SKIP LOCKED` makes replicas share the rows instead of waiting on each other. A failure is logged and
 * retried at the next interval.
 */
@Injectable()
export class OutboxPruner implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(OutboxPruner.name);
  private readonly retentionHours: number;
  private readonly intervalMs: number;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** Prunes run one after another (the timer's and `pruneNow` callers'). */
  private queue: Promise<unknown> = Promise.resolve();
  private lastPrunedAt: Date | null = null;
  private lastDeleted: number | null = null;
  private lastError: string | null = null;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(POLICY_SERVICE_CONFIG) config: PolicyServiceConfig,
  ) {
    this.retentionHours = config.outboxRetentionHours ?? DEFAULT_OUTBOX_RETENTION_HOURS;
    this.intervalMs = config.outboxPruneIntervalMs ?? DEFAULT_OUTBOX_PRUNE_INTERVAL_MS;
  }

  onApplicationBootstrap(): void {
    if (this.retentionHours === 0) {
      this.log.log('outbox pruning is off (OUTBOX_RETENTION_HOURS=0): published rows are kept');
      return;
    }
    this.schedule(0);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.queue;
  }

  /**
   * Deletes every row published more than the retention ago, after any prune in progress; returns how
   * many. Does nothing (0) when the retention is 0. Rejects if the database does.
   */
  pruneNow(): Promise<number> {
    const run = this.queue.then(() => this.prune());
    this.queue = run.catch(() => undefined);
    return run;
  }

  health(): OutboxPruningHealth {
    return {
      retentionHours: this.retentionHours,
      lastPrunedAt: this.lastPrunedAt?.toISOString() ?? null,
      lastDeleted: this.lastDeleted,
      lastError: this.lastError,
    };
  }

  /** The next prune in `delayMs`; the one after is scheduled when it has finished, so runs never overlap. */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pruneNow()
        .catch(() => undefined) // logged and recorded by prune()
        .finally(() => this.schedule(this.intervalMs));
    }, delayMs);
    this.timer.unref();
  }

  private async prune(): Promise<number> {
    if (this.retentionHours === 0) return 0;
    let total = 0;
    try {
      while (!this.stopped) {
        const [{ deleted }]: { deleted: number }[] = await this.dataSource.query(
          `WITH pruned AS (
             DELETE FROM outbox WHERE id IN (
               SELECT id FROM outbox
               WHERE published_at < now() - make_interval(hours => $1::int)
               ORDER BY id
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
             RETURNING 1)
           SELECT count(*)::int AS deleted FROM pruned`,
          [this.retentionHours, PRUNE_BATCH_SIZE],
        );
        total += deleted;
        if (deleted < PRUNE_BATCH_SIZE) break;
      }
    } catch (error) {
      this.lastError = (error as Error).message;
      this.log.warn(
        `could not prune the outbox (${total} row(s) deleted before the failure); retrying in ${this.intervalMs} ms: ${this.lastError}`,
      );
      throw error;
    }
    this.lastPrunedAt = new Date();
    this.lastDeleted = total;
    this.lastError = null;
    if (total > 0) this.log.log(`pruned ${total} outbox row(s) published more than ${this.retentionHours} h ago`);
    return total;
  }
}
