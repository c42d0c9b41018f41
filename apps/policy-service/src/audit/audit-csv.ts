import type { ChainEntry } from './audit-chain';

/** Columns of the CSV export (entries only: the JSON Lines export is the one to verify). */
export const AUDIT_CSV_COLUMNS = [
  'seq',
  'occurred_at',
  'actor',
  'action',
  'group_id',
  'system_id',
  'command_id',
  'reason',
  'incident_ref',
  'source_address',
  'details',
  'prev_hash',
  'hash',
] as const;

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes doubled. Text
 * that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return) gets a
 * leading apostrophe, so opening an export never executes what someone typed as a reason.
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvHeaderLine(): string {
  return `${AUDIT_CSV_COLUMNS.join(',')}\r\n`;
}

export function csvEntryLine(entry: ChainEntry): string {
  return `${[
    entry.seq,
    entry.occurredAt,
    entry.actor,
    entry.action,
    entry.groupId,
    entry.systemId,
    entry.commandId,
    entry.reason,
    entry.incidentRef,
    entry.sourceAddress,
    JSON.stringify(entry.details),
    entry.prevHash,
    entry.hash,
  ]
    .map(csvField)
    .join(',')}\r\n`;
}
