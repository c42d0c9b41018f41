import { Module } from '@nestjs/common';
import { AdaptersModule } from '../adapters/adapters.module';
import { AcknowledgementsController } from './acknowledgements.controller';
import { AcknowledgementsService } from './acknowledgements.service';
import { SecurityAlertsController } from './security-alerts.controller';

@Module({ imports: [AdaptersModule], controllers: [AcknowledgementsController, SecurityAlertsController], providers: [AcknowledgementsService] })
export class AcknowledgementsModule {}
