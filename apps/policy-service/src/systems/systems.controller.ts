import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { RegisterSystemRequest, SystemIdParam } from './register-system.request.dto';
import { SystemsService } from './systems.service';

@ApiTags('systems')
@ApiBearerAuth()
@Controller('systems')
export class SystemsController {
  constructor(private readonly systems: SystemsService) {}

  @Post()
  @Roles('admin')
  register(@Body() request: RegisterSystemRequest, @CurrentPrincipal() principal: Principal) {
    return this.systems.register(request, `user:${principal.sub}`);
  }

  @Get()
  @Roles(...READERS)
  list() {
    return this.systems.list();
  }

  @Get(':id')
  @Roles(...READERS)
  get(@Param() params: SystemIdParam) {
    return this.systems.get(params.id);
  }
}
