import { Controller } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { AdapterReportV1Schema, Topics, type AdapterReportV1 } from '@portcullis/contracts';
import { KafkaEvent } from '@portcullis/kafka/nest';
import { AcknowledgementsService } from './acknowledgements.service';

/** Consumes what adapters report (validated against the contract by the transport). */
@Controller()
export class AcknowledgementsController {
  constructor(private readonly acknowledgements: AcknowledgementsService) {}

  @KafkaEvent(Topics.acknowledgements, AdapterReportV1Schema)
  onAdapterReport(@Payload() report: AdapterReportV1): Promise<void> {
    switch (report.type) {
      case 'access.acknowledged':
        return this.acknowledgements.record(report);
      case 'access.drift-detected':
        return this.acknowledgements.recordDrift(report);
    }
  }
}
