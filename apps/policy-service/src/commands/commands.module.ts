import { Module } from '@nestjs/common';
import { CommandsController } from './commands.controller';
import { CommandsService } from './commands.service';
import { GroupDecisionsService } from './group-decisions.service';

@Module({ controllers: [CommandsController], providers: [CommandsService, GroupDecisionsService] })
export class CommandsModule {}
