import { Module } from '@nestjs/common';
import { DesiredStateReissuer } from './desired-state.reissuer';
import { DesiredStateWatcher } from './desired-state.watcher';
import { SystemAccessMessageFactory } from './system-access-message.factory';

/**
 * Signed desired-state messages: built for each decision, re-issued before they expire, and published
 * again over any record on the topic that the service did not publish as a system's latest decision.
 */
@Module({
  providers: [SystemAccessMessageFactory, DesiredStateReissuer, DesiredStateWatcher],
  exports: [SystemAccessMessageFactory],
})
export class DesiredStateModule {}
