import { DatabaseError } from 'pg';
import { describeError } from '@portcullis/adapter-kit';

export interface PostgresFailure {
  outcome: 'failed-retriable' | 'failed-permanent';
  detail: string;
}

/**
 * SQLSTATE classes that describe a passing condition: connection exception (08), transaction rollback
 * (40), insufficient resources (53), operator intervention — admin shutdown, statement timeout — (57),
 * system error (58).
 */
const TRANSIENT_SQLSTATE_CLASSES = new Set(['08', '40', '53', '57', '58']);
/** lock_not_available, object_in_use. */
const TRANSIENT_SQLSTATES = new Set(['55P03', '55006']);

const HINTS: Record<string, string> = {
  '42501':
    'the adapter role needs CREATEROLE (on PostgreSQL 16+ with ADMIN OPTION on the roles it manages) and membership in pg_signal_backend',
  '28P01': 'check the credentials of the system URL',
  '28000': 'check pg_hba.conf and the role of the system URL',
  '3D000': 'the database of the system URL does not exist',
};

/**
 * Sorts an error from the server or the connection into retriable and permanent. Errors the server
 * reports are deterministic (a missing privilege stays missing) unless they belong to a transient class;
 * errors without a SQLSTATE come from the network or the driver (refused, reset, timed out) and pass.
 */
export function classifyPostgresFailure(error: unknown): PostgresFailure {
  if (error instanceof DatabaseError && error.code) {
    const code = error.code;
    const transient = TRANSIENT_SQLSTATE_CLASSES.has(code.slice(0, 2)) || TRANSIENT_SQLSTATES.has(code);
    const hint = HINTS[code];
    return {
      outcome: transient ? 'failed-retriable' : 'failed-permanent',
      detail: `${error.message} (SQLSTATE ${code})${hint ? `: ${hint}` : ''}`,
    };
  }
  return { outcome: 'failed-retriable', detail: describeError(error) };
}
