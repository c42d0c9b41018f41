import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { OutboxMessageEntity } from '../database/entities';

/** Notified after every insert into the outbox, at commit (a trigger, migration OutboxNotifyTrigger). */
export const OUTBOX_CHANNEL = 'portcullis_outbox';

export interface OutboxMessage {
  topic: string;
  key: string;
  /** The exact bytes to publish (already encoded and validated against the contract). */
  value: string;
  /** Publish to this route's partition instead of the key's (see libs/kafka partition-routing). */
  partitionKey?: string;
}

/**
 * Writes outgoing messages in the caller's transaction, so a decision and its messages are committed
 * together or not at all. The insert wakes the relay (a trigger notifies `OUTBOX_CHANNEL`); PostgreSQL
 * delivers the NOTIFY at commit, never before.
 */
@Injectable()
export class OutboxWriter {
  async enqueue(manager: EntityManager, messages: OutboxMessage[]): Promise<void> {
    // In chunks: PostgreSQL takes at most 65,535 parameters per statement (a global revoke writes one row per system).
    for (let i = 0; i < messages.length; i += ROWS_PER_INSERT) {
      await manager.insert(
        OutboxMessageEntity,
        messages.slice(i, i + ROWS_PER_INSERT).map((message) => ({
          topic: message.topic,
          messageKey: message.key,
          partitionKey: message.partitionKey ?? null,
          payload: message.value,
        })),
      );
    }
  }
}

const ROWS_PER_INSERT = 2_000;
