import type { z } from 'zod';
import type { EnforcementJournal } from './access-enforcer';

/**
 * The journal holds something the enforcer cannot read. Retrying cannot help and guessing could restore
 * the wrong principals, so the runtime reports it as a permanent failure for an operator to look at.
 */
export class CorruptJournalError extends Error {
  override readonly name = 'CorruptJournalError';
}

/**
 * Reads an enforcer's journal through the enforcer's own schema; `empty` when nothing is recorded.
 * Throws `CorruptJournalError` when the stored value does not match.
 */
export function readJournal<T>(journal: EnforcementJournal, schema: z.ZodType<T>, empty: T): T {
  const stored = journal.read<unknown>();
  if (stored === undefined) return empty;
  const parsed = schema.safeParse(stored);
  if (!parsed.success) {
    throw new CorruptJournalError(`the stored journal does not match the enforcer's schema: ${parsed.error.message}`);
  }
  return parsed.data;
}
