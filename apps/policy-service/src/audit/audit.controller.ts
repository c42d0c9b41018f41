import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { Roles } from '../auth/auth.decorators';
import { READERS } from '../auth/roles';
import { AuditLog } from './audit-log.service';
import { AuditQueryRequest } from './audit-query.request.dto';

@ApiTags('audit')
@ApiBearerAuth()
@Controller('audit')
export class AuditController {
  constructor(private readonly auditLog: AuditLog) {}

  /** The append-only history, newest first; filter by group, system, command, actor, action and time. */
  @Get()
  @Roles(...READERS)
  find(@Query() query: AuditQueryRequest) {
    return this.auditLog.find({
      groupId: query.groupId,
      systemId: query.systemId,
      commandId: query.commandId,
      actor: query.actor,
      action: query.action,
      from: query.from ? new Date(query.from) : undefined,
      to: query.to ? new Date(query.to) : undefined,
      before: query.cursor ? Number(query.cursor) : undefined,
      limit: query.limit ?? 100,
    });
  }
}
