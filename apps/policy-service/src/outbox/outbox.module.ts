import { Global, Module } from '@nestjs/common';
import { OutboxPruner } from './outbox.pruner';
import { OutboxRelay } from './outbox.relay';
import { OutboxWriter } from './outbox.writer';
import { PublishedRecords } from './published-records';

@Global()
@Module({
  providers: [OutboxWriter, OutboxRelay, OutboxPruner, PublishedRecords],
  exports: [OutboxWriter, OutboxRelay, OutboxPruner, PublishedRecords],
})
export class OutboxModule {}
