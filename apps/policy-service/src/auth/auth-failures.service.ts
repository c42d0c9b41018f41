import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { AuthFailureAuditor } from './auth-failure-auditor';
import { FailedAuthLimiter } from './failed-auth-limiter';

/** The per-address failure limiter and the coalescing auditor of failed authentications, with their upkeep. */
@Injectable()
export class AuthFailures implements OnModuleDestroy {
  private readonly log = new Logger('Authentication');
  readonly limiter: FailedAuthLimiter;
  readonly auditor: AuthFailureAuditor;
  private readonly timer: NodeJS.Timeout;

  constructor(
    @Inject(POLICY_SERVICE_CONFIG) config: PolicyServiceConfig,
    @InjectDataSource() dataSource: DataSource,
    auditLog: AuditLog,
  ) {
    const { authFailureLimit, authFailureWindowSeconds, authFailureAuditWindowSeconds } = config.rateLimits;
    this.limiter = new FailedAuthLimiter({ limit: authFailureLimit, windowMs: authFailureWindowSeconds * 1000 });
    this.auditor = new AuthFailureAuditor({
      windowMs: authFailureAuditWindowSeconds * 1000,
      write: (entries) => dataSource.transaction((manager) => auditLog.append(manager, entries)),
      onError: (message) => this.log.error(message),
    });
    const sweepMs = Math.min(60_000, Math.max(1_000, (Math.min(authFailureWindowSeconds, authFailureAuditWindowSeconds) * 1000) / 2));
    this.timer = setInterval(() => {
      this.limiter.sweep();
      void this.auditor.flush();
    }, sweepMs);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.auditor.flush(true);
  }
}
