import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';

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
  async enqueue(manager: EntityManager, messages: readonly OutboxMessage[]): Promise<void> {
    if (messages.length === 0) return;
    // One statement of arrays, whatever the number of rows (a global revoke writes one per system).
    await manager.query(
      `INSERT INTO outbox (topic, message_key, partition_key, payload)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
      [
        messages.map((message) => message.topic),
        messages.map((message) => message.key),
        messages.map((message) => message.partitionKey ?? null),
        messages.map((message) => message.value),
      ],
    );
  }
}
