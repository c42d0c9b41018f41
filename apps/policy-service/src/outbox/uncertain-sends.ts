import type { EntityManager } from 'typeorm';
import { isUuid } from '../audit/audit-log.service';

/**
 * Messages the relay may have published more than once. The relay publishes at least once: a send that
 * failed may still have been written by the broker (its answer was lost, or the producer was replaced
 * mid-send), and a relay that stopped after sending and before marking the rows published leaves them to
 * its successor. Either way the relay sends them again, and an adapter that applied the first copy refuses
 * the second as `replayed` (or, when a newer decision came in between, `rolled-back`) — correctly: it acts
 * on neither. What these functions record lets the service tell such a copy from an injected one.
 *
 * Limits: this knows messages, not records. A copy of one of these messages appended by someone else would
 * be explained too; the explanation says so.
 */

const MESSAGE_ID_OF_PAYLOAD = `payload::jsonb->>'messageId'`;
const UUID_PATTERN = `'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'`;

/** Notes the messages of these outbox rows (by id) as possibly published more than once. */
export async function noteUncertainSends(db: Pick<EntityManager, 'query'>, outboxIds: readonly string[]): Promise<void> {
  if (outboxIds.length === 0) return;
  await db.query(
    `INSERT INTO outbox_uncertain_sends (message_id, outbox_id)
     SELECT (${MESSAGE_ID_OF_PAYLOAD})::uuid, id FROM outbox
     WHERE id = ANY($1::bigint[]) AND ${MESSAGE_ID_OF_PAYLOAD} ~ ${UUID_PATTERN}
     ON CONFLICT (message_id) DO NOTHING`,
    [outboxIds],
  );
}

/** Notes every unpublished message: what a relay finds when it becomes leader may have been sent before. */
export async function noteUnpublishedAsUncertain(db: Pick<EntityManager, 'query'>): Promise<void> {
  await db.query(
    `INSERT INTO outbox_uncertain_sends (message_id, outbox_id)
     SELECT (${MESSAGE_ID_OF_PAYLOAD})::uuid, id FROM outbox
     WHERE published_at IS NULL AND ${MESSAGE_ID_OF_PAYLOAD} ~ ${UUID_PATTERN}
     ON CONFLICT (message_id) DO NOTHING`,
  );
}

/**
 * The explanation of a refused record that claims `messageId`, if the service may have sent that message
 * more than once itself; null otherwise (also for a claim that is not a UUID).
 */
export async function explainRefusedCopy(db: Pick<EntityManager, 'query'>, messageId: string | undefined): Promise<string | null> {
  if (messageId === undefined || !isUuid(messageId)) return null;
  const rows: { outbox_id: string }[] = await db.query('SELECT outbox_id FROM outbox_uncertain_sends WHERE message_id = $1::uuid', [messageId]);
  if (rows.length === 0) return null;
  return (
    `the policy service itself may have published message ${messageId.toLowerCase()} more than once (outbox row ${rows[0].outbox_id}: ` +
    'a send of uncertain outcome was repeated, or a relay took over before marking it published), so a refused copy of it is ' +
    'expected and harmless; the message was not injected by this, but a copy appended by someone else would look the same'
  );
}
