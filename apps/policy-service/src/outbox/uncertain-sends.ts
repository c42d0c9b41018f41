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
/**
 * Notes every unpublished message as possibly published already. The relay calls it when it becomes leader
 * (a relay before it may have sent them) and after a failed send (the broker may have written it): the rows
 * of that send are still unpublished. Rows whose payload names no UUID are skipped (the cast never sees them).
 */
export async function noteUnpublishedAsUncertain(db: Pick<EntityManager, 'query'>): Promise<void> {
  await db.query(
    `INSERT INTO outbox_uncertain_sends (message_id, outbox_id, message_key)
     SELECT * FROM (
       SELECT CASE WHEN ${MESSAGE_ID_OF_PAYLOAD} ~ ${UUID_PATTERN} THEN (${MESSAGE_ID_OF_PAYLOAD})::uuid END AS message_id, id, message_key
       FROM outbox WHERE published_at IS NULL
     ) AS noted WHERE message_id IS NOT NULL
     ON CONFLICT (message_id) DO NOTHING`,
  );
}

/**
 * The explanation of a refused record that claims `messageId` under the key `systemId`, if the service may
 * have published that message under that key more than once itself; null otherwise (also for a claim that
 * is not a UUID). Callers ask only about records they have verified as the service's own decision for that
 * system (an adapter's signed alert, the watch's own judgement).
 */
export async function explainRefusedCopy(db: Pick<EntityManager, 'query'>, messageId: string | undefined, systemId: string): Promise<string | null> {
  if (messageId === undefined || !isUuid(messageId)) return null;
  const rows: { outbox_id: string }[] = await db.query(
    'SELECT outbox_id FROM outbox_uncertain_sends WHERE message_id = $1::uuid AND message_key = $2',
    [messageId, systemId],
  );
  if (rows.length === 0) return null;
  return (
    `this may be a second copy the policy service published itself: a send of message ${messageId.toLowerCase()} (outbox row ` +
    `${rows[0].outbox_id}) ended without a certain outcome and was repeated, or a relay took over before marking it published. ` +
    'Such a copy cannot be told apart from the same message appended again by someone else; refused either way'
  );
}
