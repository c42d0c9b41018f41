import { Body, Controller, Delete, ForbiddenException, Get, Ip, Param, Put } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { AdapterHeartbeatV1Schema, Topics, type AdapterHeartbeatV1 } from '@portcullis/contracts';
import { KafkaEvent, type KafkaEventContext } from '@portcullis/kafka/nest';
import { CurrentPrincipal, Roles } from '../auth/auth.decorators';
import { READERS, type Principal } from '../auth/roles';
import { AdapterIdParam, AdapterKeyParams, RegisterAdapterKeyRequest, RevokeAdapterKeyRequest } from './adapter-key.request.dto';
import { AdapterKeysService } from './adapter-keys.service';
import { AdaptersService } from './adapters.service';

@ApiTags('adapters')
@ApiBearerAuth()
@Controller('adapters')
export class AdaptersController {
  constructor(
    private readonly adapters: AdaptersService,
    private readonly keys: AdapterKeysService,
  ) {}

  /**
   * Adapters seen through their signed heartbeats, with the systems they serve: `online`, `failed` (alive,
   * but its state store failed: it takes and enforces no decision until restarted) or `stale` (silent).
   */
  @Get()
  @Roles(...READERS)
  list() {
    return this.adapters.list();
  }

  /** Every adapter key ever registered, revoked ones included. */
  @Get('keys')
  @Roles(...READERS)
  allKeys() {
    return this.keys.list();
  }

  @Get(':adapterId/keys')
  @Roles(...READERS)
  keysOf(@Param() params: AdapterIdParam) {
    return this.keys.list(params.adapterId);
  }

  /**
   * Registers the public key an adapter signs its reports with (idempotent for the same key). People only:
   * a key registered here makes the service believe what its holder acknowledges ("enforced"), so an
   * automation's API key must not be able to add one (revoking trust stays open to automation).
   */
  @Put(':adapterId/keys/:keyId')
  @Roles('admin')
  registerKey(
    @Param() params: AdapterKeyParams,
    @Body() body: RegisterAdapterKeyRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    if (principal.via === 'api-key') throw new ForbiddenException('API keys cannot register adapter keys (trust is added by people); use a personal token');
    return this.keys.register(params.adapterId, params.keyId, body.publicKey, `user:${principal.sub}`, sourceAddress);
  }

  /** Stops trusting a key at once (a stolen adapter credential); the record stays. */
  @Delete(':adapterId/keys/:keyId')
  @Roles('admin')
  revokeKey(
    @Param() params: AdapterKeyParams,
    @Body() body: RevokeAdapterKeyRequest,
    @CurrentPrincipal() principal: Principal,
    @Ip() sourceAddress: string,
  ) {
    return this.keys.revoke(params.adapterId, params.keyId, body.reason, `user:${principal.sub}`, sourceAddress);
  }

  @KafkaEvent(Topics.adapterHeartbeats, AdapterHeartbeatV1Schema)
  onHeartbeat(@Payload() heartbeat: AdapterHeartbeatV1, @Ctx() context: KafkaEventContext): Promise<void> {
    return this.adapters.recordHeartbeat(heartbeat, context.value);
  }
}
