import { Body, Controller, Get, Param, Post, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { CreateGroupRequest, GroupIdParam, UpdateGroupRequest } from './group.request.dto';
import { GroupsService } from './groups.service';

@ApiTags('groups')
@ApiBearerAuth()
@Controller('groups')
export class GroupsController {
  constructor(private readonly groups: GroupsService) {}

  @Post()
  @Roles('admin')
  create(@Body() request: CreateGroupRequest, @CurrentPrincipal() principal: Principal) {
    return this.groups.create(request, `user:${principal.sub}`);
  }

  @Put(':id')
  @Roles('admin')
  update(@Param() params: GroupIdParam, @Body() request: UpdateGroupRequest, @CurrentPrincipal() principal: Principal) {
    return this.groups.update(params.id, request, `user:${principal.sub}`);
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
