import { Body, Controller, Get, HttpCode, HttpStatus, Ip, Param, Post, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { SensitiveRateLimit } from '../auth/rate-limit';
import { ForbiddenActionError } from './approval.errors';
import { GroupIdParam } from '../groups/group.request.dto';
import { CommandIdParam, CommandQueryRequest } from './command-query.request.dto';
import { CommandsService } from './commands.service';
import { ApproveRestoreRequest, RejectRestoreRequest, RestoreGroupRequest, RevokeGroupRequest, RevokeGroupsRequest } from './group-decision.request.dto';
import { GroupDecisionsService, type GroupDecisionOutcome } from './group-decisions.service';

@ApiTags('commands')
@ApiBearerAuth()
@Controller()
export class CommandsController {
  constructor(
    private readonly decisions: GroupDecisionsService,
    private readonly commands: CommandsService,
  ) {}

  /**
   * Revokes many groups in one decision — everything in scope, in an incident: all of them or none (404 for
   * an unknown group, before anything is written). 202 with each group's command; a group that was
   * revoked already is listed with `accepted: false`.
   */
  @Post('groups/revoke')
  @HttpCode(HttpStatus.ACCEPTED)
  @Roles('security-lead')
  async revokeMany(@Body() request: RevokeGroupsRequest, @CurrentPrincipal() principal: Principal, @Ip() sourceAddress: string) {
    const commands = await this.decisions.revokeMany({
      groupIds: request.groupIds,
      reason: request.reason,
      incidentRef: request.incidentRef,
      requestedBy: principal.sub,
      sourceAddress,
    });
    return { commands };
  }

  /** Withdraws access to every system of the group. 202 with the command; 200 if it already was revoked. */
  @Post('groups/:id/revoke')
  @Roles('security-lead')
  async revoke(
    @Param() params: GroupIdParam,
    @Body() request: RevokeGroupRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
    @Res({ passthrough: true }) response: Response,
  ) {
    const outcome = await this.decisions.decide({
      action: 'revoke',
      groupId: params.id,
      reason: request.reason,
      incidentRef: request.incidentRef,
      requestedBy: principal.sub,
      roles: principal.roles,
      sourceAddress,
    });
    return respond(outcome, response);
  }

  /**
   * Gives access back to the group's systems that no other revoked group covers — with four eyes: a
   * security lead's restore is a request (202, `status: awaiting-approval`, nothing published) that a
   * different security lead approves. Where the group allows `single-admin` restore, an admin's restore
   * applies at once (202, like a revoke). 200 if the group is not revoked.
   */
  @Post('groups/:id/restore')
  @Roles('security-lead', 'admin')
  async restore(
    @Param() params: GroupIdParam,
    @Body() request: RestoreGroupRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
    @Res({ passthrough: true }) response: Response,
  ) {
    // Automations contain (revoke); giving access back is for people. Otherwise a lead holding an
    // automation's key could request as the key and approve as themselves.
    if (principal.via === 'api-key') {
      throw new ForbiddenActionError('restore_needs_a_person', 'a restore must be requested by a person, not with an API key');
    }
    const outcome = await this.decisions.decide({
      action: 'restore',
      groupId: params.id,
      reason: request.reason,
      incidentRef: request.incidentRef,
      requestedBy: principal.sub,
      roles: principal.roles,
      sourceAddress,
    });
    return respond(outcome, response);
  }

  /**
   * A second security lead approves a restore request: the restore is applied and published now.
   * 403 for the requester; 409 once the request is decided, expired or superseded, or for a command that
   * is not a restore request.
   */
  @Post('commands/:id/approve')
  @HttpCode(HttpStatus.OK)
  @Roles('security-lead')
  @SensitiveRateLimit()
  async approve(
    @Param() params: CommandIdParam,
    @Body() request: ApproveRestoreRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    // The second pair of eyes is a person's.
    if (principal.via === 'api-key') {
      throw new ForbiddenActionError('approval_needs_a_person', 'a restore must be approved by a person, not with an API key');
    }
    const command = await this.decisions.approve({ commandId: params.id, decidedBy: principal.sub, comment: request.comment, sourceAddress });
    return { commandId: command.id, approved: true, command };
  }

  /** Closes a restore request without applying it (the requester may withdraw their own). 409 once closed. */
  @Post('commands/:id/reject')
  @HttpCode(HttpStatus.OK)
  @Roles('security-lead')
  @SensitiveRateLimit()
  async reject(
    @Param() params: CommandIdParam,
    @Body() request: RejectRestoreRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    const command = await this.decisions.reject({ commandId: params.id, decidedBy: principal.sub, comment: request.reason, sourceAddress });
    return { commandId: command.id, approved: false, command };
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
  const note = !outcome.accepted
    ? 'the group already was in that state; nothing new was published'
    : outcome.awaitingApproval
      ? `restore requested: another security lead must approve it (POST /api/v1/commands/${outcome.command?.id}/approve) ` +
        `before ${outcome.command?.approval?.expiresAt}; nothing was published yet`
      : undefined;
  return {
    commandId: outcome.command?.id ?? null,
    accepted: outcome.accepted,
    status: outcome.command?.status ?? null,
    ...(note ? { note } : {}),
    command: outcome.command,
  };
}
