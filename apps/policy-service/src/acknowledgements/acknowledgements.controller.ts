import { Controller } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { AdapterReportV1Schema, Topics, type AdapterReportV1 } from '@portcullis/contracts';
import { KafkaEvent, type KafkaEventBatchItem } from '@portcullis/kafka/nest';
import { AcknowledgementsService } from './acknowledgements.service';

/**
 * Consumes what adapters report, a fetched batch at a time (validated against the contract by the
 * transport; signatures checked by the service), and records each batch in one transaction.
 */
@Controller()
export class AcknowledgementsController {
  constructor(private readonly acknowledgements: AcknowledgementsService) {}

  @KafkaEvent(Topics.acknowledgements, AdapterReportV1Schema, { batch: true })
  onAdapterReports(@Payload() reports: KafkaEventBatchItem<AdapterReportV1>[]): Promise<void> {
    return this.acknowledgements.recordReports(reports.map(({ data, context }) => ({ report: data, raw: context.value })));
  }
}
