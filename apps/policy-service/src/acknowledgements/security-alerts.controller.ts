import { Controller, Get } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Roles } from '../auth/auth.decorators';
import { READERS } from '../auth/roles';
import { SecurityAlertEntity } from '../database/entities';

@ApiTags('security-alerts')
@ApiBearerAuth()
@Controller('security-alerts')
export class SecurityAlertsController {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** The latest 500 messages adapters refused (forged, replayed, rolled back, ...), newest first. */
  @Get()
  @Roles(...READERS)
  async list() {
    const alerts = await this.dataSource.getRepository(SecurityAlertEntity).find({ order: { receivedAt: 'DESC' }, take: 500 });
    return alerts.map((alert) => ({
      messageId: alert.messageId,
      adapterId: alert.adapterId,
      systemId: alert.systemId,
      reason: alert.reason,
      severity: alert.severity,
      verified: alert.verified,
      detail: alert.detail,
      occurredAt: alert.occurredAt.toISOString(),
      receivedAt: alert.receivedAt.toISOString(),
      /** What the service knows about the refused record (e.g. that it sent that message twice itself), or null. */
      explanation: alert.explanation,
    }));
  }
}
