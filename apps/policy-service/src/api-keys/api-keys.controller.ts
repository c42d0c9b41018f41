import { Body, Controller, Delete, Get, Header, Ip, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { SensitiveRateLimit } from '../auth/rate-limit';
import type { Principal } from '../auth/roles';
import { ApiKeyIdParam, CreateApiKeyRequest, RevokeApiKeyRequest } from './api-key.request.dto';
import { ApiKeysService } from './api-keys.service';

@ApiTags('api-keys')
@ApiBearerAuth()
@ApiSecurity('api-key')
@Controller('api-keys')
export class ApiKeysController {
  constructor(private readonly apiKeys: ApiKeysService) {}

  @Post()
  @Roles('admin')
  @SensitiveRateLimit()
  @Header('Cache-Control', 'no-store')
  @ApiOperation({ summary: 'Creates an API key; the response is the only time its secret `key` is shown' })
  create(@Body() request: CreateApiKeyRequest, @CurrentPrincipal() principal: Principal, @Ip() sourceAddress: string) {
    return this.apiKeys.create(request, principal, sourceAddress);
  }

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'Every API key, revoked and expired ones included; never the secret' })
  list() {
    return this.apiKeys.list();
  }

  @Get(':id')
  @Roles('admin', 'auditor')
  get(@Param() params: ApiKeyIdParam) {
    return this.apiKeys.get(params.id);
  }

  @Delete(':id')
  @Roles('admin')
  @SensitiveRateLimit()
  @ApiOperation({ summary: 'Revokes an API key at once (the key is kept, as evidence, but refused)' })
  revoke(
    @Param() params: ApiKeyIdParam,
    @Body() request: RevokeApiKeyRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    return this.apiKeys.revoke(params.id, request, principal, sourceAddress);
  }
}
