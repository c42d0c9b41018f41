import { Module } from '@nestjs/common';
import { DesiredStateModule } from '../desired-state/desired-state.module';
import { CommandsController } from './commands.controller';
import { CommandsService } from './commands.service';
import { GroupDecisionsService } from './group-decisions.service';

@Module({ imports: [DesiredStateModule], controllers: [CommandsController], providers: [CommandsService, GroupDecisionsService] })
export class CommandsModule {}
