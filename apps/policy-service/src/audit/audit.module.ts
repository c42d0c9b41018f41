import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AuditController } from './audit.controller';
import { AuditLog } from './audit-log.service';
import { AuditTrail } from './audit-trail.service';
import { RequestCredentialInterceptor } from './request-credential';

@Global()
@Module({
  controllers: [AuditController],
  providers: [AuditLog, AuditTrail, { provide: APP_INTERCEPTOR, useClass: RequestCredentialInterceptor }],
  exports: [AuditLog, AuditTrail],
})
export class AuditModule {}
