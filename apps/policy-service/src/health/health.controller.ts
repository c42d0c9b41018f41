import { Controller, Get, HttpStatus, Inject, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Response } from 'express';
import type { Kafka } from 'kafkajs';
import { DataSource } from 'typeorm';
import { Public } from '../auth/auth.decorators';
import { KAFKA } from '../kafka/kafka.module';
import { OutboxPruner } from '../outbox/outbox.pruner';
import { OutboxRelay } from '../outbox/outbox.relay';
import { AuditTrail } from '../audit/audit-trail.service';

const CHECK_TIMEOUT_MS = 3_000;

async function check(probe: () => Promise<unknown>): Promise<{ status: 'up' | 'down'; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { status: 'up' };
  } catch (error) {
    return { status: 'down', error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KAFKA) private readonly kafka: Kafka,
    private readonly relay: OutboxRelay,
    private readonly pruner: OutboxPruner,
    private readonly auditTrail: AuditTrail,
  ) {}

  /** Liveness: the process answers. */
  @Get('live')
  @Public()
  live() {
    return { status: 'ok' };
  }

  /**
   * Readiness: the database and Kafka answer; includes the outbox backlog (and its last pruning) and the audit checkpoint
   * writer's state (a writer that refuses to sign means the history was tampered with: alert on it).
   * 503 when a dependency is down.
   */
  @Get()
  @Public()
  async ready(@Res({ passthrough: true }) response: Response) {
    const [database, kafka] = await Promise.all([
      check(() => this.dataSource.query('SELECT 1')),
      check(async () => {
        const admin = this.kafka.admin();
        await admin.connect();
        try {
          await admin.describeCluster();
        } finally {
          await admin.disconnect();
        }
      }),
    ]);
    const outbox = database.status === 'up' ? { ...(await this.relay.health()), pruning: this.pruner.health() } : null;
    const ok = database.status === 'up' && kafka.status === 'up';
    response.status(ok ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    const { healthy, status, lastCheckpointSeq, problem } = this.auditTrail.writerState();
    return {
      status: ok ? 'ok' : 'unavailable',
      checks: { database, kafka },
      outbox,
      auditCheckpoints: { healthy, status, lastCheckpointSeq, problem: problem ? { seq: problem.seq, reason: problem.reason } : null },
    };
  }
}
