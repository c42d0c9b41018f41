import { Controller } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { AccessAcknowledgedV1Schema, Topics, type AccessAcknowledgedV1 } from '@portcullis/contracts';
import { KafkaEvent } from '@portcullis/kafka/nest';
import { AcknowledgementsService } from './acknowledgements.service';

/** Consumes adapters' acknowledgements (validated against the contract by the transport). */
@Controller()
export class AcknowledgementsController {
  constructor(private readonly acknowledgements: AcknowledgementsService) {}

  @KafkaEvent(Topics.acknowledgements, AccessAcknowledgedV1Schema)
  onAcknowledgement(@Payload() ack: AccessAcknowledgedV1): Promise<void> {
    return this.acknowledgements.record(ack);
  }
}
