import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { ReliableProducer } from '@portcullis/kafka';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { OUTBOX_CHANNEL } from './outbox.writer';
import { PublishedRecords } from './published-records';
import { noteUnpublishedAsUncertain } from './uncertain-sends';

/** Arbitrary constant naming the relay's leadership lock: one relay publishes at a time, in order. */
export const RELAY_LOCK_KEY = 7_346_112_001;
const BATCH_SIZE = 500;
const MAX_BACKOFF_MS = 30_000;

export interface OutboxRelayHealth {
  leader: boolean;
  backlog: number;
  lastPublishedAt: string | null;
  lastError: string | null;
}

/**
 * Publishes the outbox to Kafka in commit order, at least once. It is woken by NOTIFY the moment a
 * decision commits (no polling delay); a slow sweep only covers notifications lost while reconnecting.
 * While Kafka is down it retries with back-off and publishes the backlog when Kafka returns. With
 * several replicas, a session advisory lock elects the one relay that publishes.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger(OutboxRelay.name);
  private listener?: Client;
  private leader = false;
  private draining = false;
  private wakeAgain = false;
  private stopped = false;
  private failures = 0;
  private sweepTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private idleWaiters: (() => void)[] = [];
  private lastPublishedAt: Date | null = null;
  private lastError: string | null = null;
  /** Whether the backlog is noted as possibly sent before since this leadership began or a send last failed. */
  private backlogNoted = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly producer: ReliableProducer,
    private readonly published: PublishedRecords,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.connectListener();
    this.sweepTimer = setInterval(() => void this.wake(), this.config.outboxSweepIntervalMs);
    this.sweepTimer.unref();
    this.wake();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.reconnectTimer);
    await this.whenIdle();
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
  }

  /** Starts a drain now, or right after the one in progress. */
  wake(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.wakeAgain = true;
      return;
    }
    void this.drain();
  }

  async health(): Promise<OutboxRelayHealth> {
    const [{ count }] = await this.dataSource.query('SELECT count(*)::int AS count FROM outbox WHERE published_at IS NULL');
    return {
      leader: this.leader,
      backlog: count,
      lastPublishedAt: this.lastPublishedAt?.toISOString() ?? null,
      lastError: this.lastError,
    };
  }

  private async connectListener(): Promise<void> {
    const client = new Client({ connectionString: this.config.databaseUrl, application_name: 'portcullis-outbox-relay' });
    client.on('notification', () => this.wake());
    client.on('error', (error) => this.onListenerLost(client, error));
    client.on('end', () => this.onListenerLost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      this.listener = client;
      await this.tryLead();
    } catch (error) {
      this.log.warn(`outbox listener could not connect (${(error as Error).message}); retrying`);
      void client.end().catch(() => undefined);
      this.scheduleReconnect();
    }
  }

  private onListenerLost(client: Client, error: unknown): void {
    if (this.listener !== client) return;
    this.log.warn(`outbox listener lost (${(error as Error).message}); reconnecting`);
    this.listener = undefined;
    this.leader = false;
    void client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connectListener().then(() => this.wake());
    }, 1_000);
    this.reconnectTimer.unref();
  }

  private async tryLead(): Promise<boolean> {
    if (this.leader) return true;
    if (!this.listener) return false;
    const [{ locked }] = (await this.listener.query('SELECT pg_try_advisory_lock($1) AS locked', [RELAY_LOCK_KEY])).rows;
    this.leader = locked === true;
    // A new leader owes the backlog's messages a note first: a relay before it may have sent them already.
    if (this.leader) this.backlogNoted = false;
    return this.leader;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      do {
        this.wakeAgain = false;
        if (!(await this.tryLead())) break;
        // A batch comes back full while there may be more; a lost leadership ends the drain (the loop returns 0).
        while (!this.stopped && (await this.publishBatch()) === BATCH_SIZE) {
          // keep going while full batches come back
        }
      } while (this.wakeAgain && !this.stopped);
      this.failures = 0;
      this.lastError = null;
    } catch (error) {
      this.failures += 1;
      this.lastError = (error as Error).message;
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(this.failures, 10));
      this.log.error(`outbox publish failed (attempt ${this.failures}), retrying in ${delay} ms: ${this.lastError}`);
      if (!this.stopped) {
        this.retryTimer = setTimeout(() => this.wake(), delay);
        this.retryTimer.unref();
      }
    } finally {
      this.draining = false;
      const waiters = this.idleWaiters.splice(0);
      waiters.forEach((resolve) => resolve());
    }
  }

  /** Publishes the oldest unpublished messages while this relay leads; returns how many. */
  private async publishBatch(): Promise<number> {
    if (!this.leader) return 0;
    if (!this.backlogNoted) await this.noteBacklog();
    const rows: OutboxRow[] = await this.dataSource.query(
      `SELECT id, topic, message_key, partition_key, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1`,
      [BATCH_SIZE],
    );
    if (rows.length === 0) return 0;
    // Remembered before sending: the decisions watch may read a record before the broker's acknowledgement
    // reaches the relay, and these bytes are the service's own whether or not this send succeeds.
    for (const row of rows) this.published.remember(row.payload);
    try {
      await this.producer.send(
        rows.map((row) => ({
          topic: row.topic,
          key: row.message_key,
          partitionKey: row.partition_key ?? undefined,
          value: row.payload,
          headers: { 'content-type': 'application/json' },
        })),
      );
    } catch (error) {
      // The broker may have written some or all of them all the same. They stay unpublished and are sent
      // again (at least once), after the next batch has noted the backlog, these rows included.
      this.backlogNoted = false;
      throw error;
    }
    await this.dataSource.query('UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])', [
      rows.map((row) => row.id),
    ]);
    this.lastPublishedAt = new Date();
    return rows.length;
  }

  /**
   * Notes the unpublished messages as possibly sent before (uncertain-sends.ts): once per leadership, after
   * every failed send (its rows are still unpublished), and again after a note failed. Only an annotation of later alerts: a failure is logged, never holds up
   * publishing (the next batch tries again).
   */
  private async noteBacklog(): Promise<void> {
    try {
      await noteUnpublishedAsUncertain(this.dataSource);
      this.backlogNoted = true;
    } catch (error) {
      this.log.warn(`could not note the unpublished messages as possibly sent before: ${(error as Error).message}`);
    }
  }

  private whenIdle(): Promise<void> {
    if (!this.draining) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

interface OutboxRow {
  id: string;
  topic: string;
  message_key: string;
  /** NULL: by key. */
  partition_key: string | null;
  payload: string;
}
