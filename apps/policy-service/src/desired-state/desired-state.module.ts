import { Module } from '@nestjs/common';
import { DesiredStateReissuer } from './desired-state.reissuer';
import { SystemAccessMessageFactory } from './system-access-message.factory';

/** Signed desired-state messages: built for each decision, and re-issued before they expire. */
@Module({ providers: [SystemAccessMessageFactory, DesiredStateReissuer], exports: [SystemAccessMessageFactory] })
export class DesiredStateModule {}
