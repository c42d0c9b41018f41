import { Body, Controller, Get, HttpStatus, Param, Post, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { GroupIdParam } from '../groups/group.request.dto';
import { CommandIdParam, CommandQueryRequest } from './command-query.request.dto';
import { CommandsService } from './commands.service';
import { RestoreGroupRequest, RevokeGroupRequest } from './group-decision.request.dto';
import { GroupDecisionsService, type GroupDecisionOutcome } from './group-decisions.service';

@ApiTags('commands')
@ApiBearerAuth()
@Controller()
export class CommandsController {
  constructor(
    private readonly decisions: GroupDecisionsService,
    private readonly commands: CommandsService,
  ) {}

  /** Withdraws access to every system of the group. 202 with the command; 200 if it already was revoked. */
  @Post('groups/:id/revoke')
  @Roles('security-lead')
  async revoke(
    @Param() params: GroupIdParam,
    @Body() request: RevokeGroupRequest,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) response: Response,
  ) {
    const outcome = await this.decisions.decide({
      action: 'revoke',
      groupId: params.id,
      reason: request.reason,
      incidentRef: request.incidentRef,
      requestedBy: principal.sub,
    });
    return respond(outcome, response);
  }

  /** Gives access back to the group's systems that no other revoked group covers. */
  @Post('groups/:id/restore')
  @Roles('security-lead')
  async restore(
    @Param() params: GroupIdParam,
    @Body() request: RestoreGroupRequest,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) response: Response,
  ) {
    const outcome = await this.decisions.decide({
      action: 'restore',
      groupId: params.id,
      reason: request.reason,
      requestedBy: principal.sub,
    });
    return respond(outcome, response);
  }

  @Get('commands')
  @Roles(...READERS)
  list(@Query() query: CommandQueryRequest) {
    const [requestedAt, id] = query.cursor ? query.cursor.split('_') : [];
    return this.commands.list({
      groupId: query.groupId,
      before: query.cursor ? { requestedAt: new Date(requestedAt), id } : undefined,
      limit: query.limit ?? 50,
    });
  }

  @Get('commands/:id')
  @Roles(...READERS)
  get(@Param() params: CommandIdParam) {
    return this.commands.get(params.id);
  }
}

function respond(outcome: GroupDecisionOutcome, response: Response) {
  response.status(outcome.accepted ? HttpStatus.ACCEPTED : HttpStatus.OK);
  return {
    commandId: outcome.command?.id ?? null,
    accepted: outcome.accepted,
    ...(outcome.accepted ? {} : { note: 'the group already was in that state; nothing new was published' }),
    command: outcome.command,
  };
}
