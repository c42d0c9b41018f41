import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { AdapterReportV1Schema, Topics, type AdapterReportV1 } from '@portcullis/contracts';
import { KafkaEvent, type KafkaEventContext } from '@portcullis/kafka/nest';
import { AcknowledgementsService } from './acknowledgements.service';

/** Consumes what adapters report (validated against the contract by the transport, signatures checked here). */
@Controller()
export class AcknowledgementsController {
  constructor(private readonly acknowledgements: AcknowledgementsService) {}

  @KafkaEvent(Topics.acknowledgements, AdapterReportV1Schema)
  onAdapterReport(@Payload() report: AdapterReportV1, @Ctx() context: KafkaEventContext): Promise<void> {
    switch (report.type) {
      case 'access.acknowledged':
        return this.acknowledgements.record(report, context.value);
      case 'access.drift-detected':
        return this.acknowledgements.recordDrift(report, context.value);
      case 'adapter.security-alert':
        return this.acknowledgements.recordSecurityAlert(report, context.value);
    }
  }
}
