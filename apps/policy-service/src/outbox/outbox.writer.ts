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
 * The outbox insert of `messages`, as a statement of its own or as a data-modifying CTE of a bigger one
 * (a decision writes its messages in the statement that writes the decision): its SQL, with parameters
 * numbered from `firstParam`, and those parameters. Empty SQL for no messages — the insert would still wake
 * the relay. Arrays, not one parameter per value: one statement whatever the number of rows (a global revoke
 * writes one per system).
 */
export function outboxInsert(messages: readonly OutboxMessage[], firstParam = 1): { sql: string; params: (string | null)[][] } {
  if (messages.length === 0) return { sql: '', params: [] };
  const [topic, key, partitionKey, payload] = [0, 1, 2, 3].map((offset) => `$${firstParam + offset}::text[]`);
  return {
    sql: `INSERT INTO outbox (topic, message_key, partition_key, payload) SELECT * FROM unnest(${topic}, ${key}, ${partitionKey}, ${payload})`,
    params: [
      messages.map((message) => message.topic),
      messages.map((message) => message.key),
      messages.map((message) => message.partitionKey ?? null),
      messages.map((message) => message.value),
    ],
  };
}

/**
 * Writes outgoing messages in the caller's transaction, so a decision and its messages are committed
 * together or not at all. The insert wakes the relay (a trigger notifies `OUTBOX_CHANNEL`); PostgreSQL
 * delivers the NOTIFY at commit, never before.
 */
@Injectable()
export class OutboxWriter {
  async enqueue(manager: EntityManager, messages: readonly OutboxMessage[]): Promise<void> {
    const { sql, params } = outboxInsert(messages);
    if (sql) await manager.query(sql, params);
  }
}
