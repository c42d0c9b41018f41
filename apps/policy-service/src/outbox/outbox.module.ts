import { Global, Module } from '@nestjs/common';
import { OutboxRelay } from './outbox.relay';
import { OutboxWriter } from './outbox.writer';
import { PublishedRecords } from './published-records';

@Global()
@Module({ providers: [OutboxWriter, OutboxRelay, PublishedRecords], exports: [OutboxWriter, OutboxRelay, PublishedRecords] })
export class OutboxModule {}
