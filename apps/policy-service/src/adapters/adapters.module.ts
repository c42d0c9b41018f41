import { Module } from '@nestjs/common';
import { AdapterKeysService } from './adapter-keys.service';
import { AdaptersController } from './adapters.controller';
import { AdaptersService } from './adapters.service';

@Module({ controllers: [AdaptersController], providers: [AdaptersService, AdapterKeysService], exports: [AdapterKeysService] })
export class AdaptersModule {}
