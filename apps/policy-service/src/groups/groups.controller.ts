import { ForbiddenActionError } from '../commands/approval.errors';
import { Body, Controller, Get, Ip, Param, Post, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { CreateGroupRequest, GroupIdParam, RestoreApprovalRequest, UpdateGroupRequest } from './group.request.dto';
import { GroupsService } from './groups.service';

@ApiTags('groups')
@ApiBearerAuth()
@Controller('groups')
export class GroupsController {
  constructor(private readonly groups: GroupsService) {}

  @Post()
  @Roles('admin')
  create(@Body() request: CreateGroupRequest, @CurrentPrincipal() principal: Principal, @Ip() sourceAddress: string) {
    return this.groups.create(request, `user:${principal.sub}`, sourceAddress);
  }

  @Put(':id')
  @Roles('admin')
  update(
    @Param() params: GroupIdParam,
    @Body() request: UpdateGroupRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    return this.groups.update(params.id, request, `user:${principal.sub}`, sourceAddress);
  }

  /** Four eyes on restore (default) or single-person restore by an admin; admins only, audited. */
  @Put(':id/restore-approval')
  @Roles('admin')
  setRestoreApproval(
    @Param() params: GroupIdParam,
    @Body() request: RestoreApprovalRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    if (principal.via === 'api-key') {
      throw new ForbiddenActionError('needs_a_person', 'who may restore a group is changed by a person, not with an API key');
    }
    return this.groups.setRestoreApproval(params.id, request, `user:${principal.sub}`, sourceAddress);
  }

  @Get()
  @Roles(...READERS)
  list() {
    return this.groups.list();
  }

  @Get(':id')
  @Roles(...READERS)
  get(@Param() params: GroupIdParam) {
    return this.groups.get(params.id);
  }
}
