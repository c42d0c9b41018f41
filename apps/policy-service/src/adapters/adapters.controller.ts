import { Controller, Get } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { AdapterHeartbeatV1Schema, Topics, type AdapterHeartbeatV1 } from '@portcullis/contracts';
import { KafkaEvent } from '@portcullis/kafka/nest';
import { Roles } from '../auth/auth.decorators';
import { READERS } from '../auth/roles';
import { AdaptersService } from './adapters.service';

@ApiTags('adapters')
@ApiBearerAuth()
@Controller('adapters')
export class AdaptersController {
  constructor(private readonly adapters: AdaptersService) {}

  /** Adapters seen through their heartbeats, `online` or `stale`, with the systems they serve. */
  @Get()
  @Roles(...READERS)
  list() {
    return this.adapters.list();
  }

  @KafkaEvent(Topics.adapterHeartbeats, AdapterHeartbeatV1Schema)
  onHeartbeat(@Payload() heartbeat: AdapterHeartbeatV1): Promise<void> {
    return this.adapters.recordHeartbeat(heartbeat);
  }
}
