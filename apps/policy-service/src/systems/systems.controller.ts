import { Body, Controller, Delete, Get, HttpStatus, Ip, Param, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { ForbiddenActionError } from '../commands/approval.errors';
import { AddExemptionRequest, ExemptionParams, RemoveExemptionRequest } from './exemption.request.dto';
import { RegisterSystemRequest, SystemIdParam } from './register-system.request.dto';
import { SystemsService } from './systems.service';

@ApiTags('systems')
@ApiBearerAuth()
@Controller('systems')
export class SystemsController {
  constructor(private readonly systems: SystemsService) {}

  @Post()
  @Roles('admin')
  register(@Body() request: RegisterSystemRequest, @CurrentPrincipal() principal: Principal, @Ip() sourceAddress: string) {
    if (request.exemptPrincipals?.length) refuseApiKey(principal, 'registers a system with break-glass exemptions');
    return this.systems.register(request, { actor: `user:${principal.sub}`, sourceAddress });
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

  /** Break-glass exemptions of the system, expired ones included (`expired: true`). */
  @Get(':id/exemptions')
  @Roles(...READERS)
  exemptions(@Param() params: SystemIdParam) {
    return this.systems.listExemptions(params.id);
  }

  /** Exempts a principal (201), or replaces its exemption's reason and expiry (200). */
  @Post(':id/exemptions')
  @Roles('admin')
  async addExemption(
    @Param() params: SystemIdParam,
    @Body() request: AddExemptionRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
    @Res({ passthrough: true }) response: Response,
  ) {
    refuseApiKey(principal, 'exempts a principal');
    const outcome = await this.systems.addExemption(params.id, request, { actor: `user:${principal.sub}`, sourceAddress });
    response.status(outcome.created ? HttpStatus.CREATED : HttpStatus.OK);
    return outcome.exemption;
  }

  /** Removes an exemption; 409 while the system is revoked and the exemption still valid. Automations may (it contains). */
  @Delete(':id/exemptions/:principal')
  @Roles('admin')
  removeExemption(
    @Param() params: ExemptionParams,
    @Body() request: RemoveExemptionRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    return this.systems.removeExemption(params.id, params.principal, request, { actor: `user:${principal.sub}`, sourceAddress });
  }
}

/**
 * An exemption keeps a principal's access through every revocation: a person grants it, not an automation's
 * key (a stolen admin key could otherwise exempt the attacker's account before the containment).
 */
function refuseApiKey(principal: Principal, what: string): void {
  if (principal.via === 'api-key') {
    throw new ForbiddenActionError('needs_a_person', `a person ${what}, not an API key: exemptions keep access through every revocation`);
  }
}
