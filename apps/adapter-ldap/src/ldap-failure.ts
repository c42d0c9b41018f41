import { ResultCodeError } from 'ldapts';
import { describeError } from '@portcullis/adapter-kit';

export interface LdapFailure {
  outcome: 'failed-retriable' | 'failed-permanent';
  detail: string;
}

/** RFC 4511 names of the result codes the adapter expects; others are reported by their code. */
const RESULT_NAMES: Record<number, string> = {
  1: 'operationsError',
  3: 'timeLimitExceeded',
  4: 'sizeLimitExceeded',
  8: 'strongerAuthRequired',
  11: 'adminLimitExceeded',
  13: 'confidentialityRequired',
  16: 'noSuchAttribute',
  17: 'undefinedAttributeType',
  19: 'constraintViolation',
  20: 'attributeOrValueExists',
  32: 'noSuchObject',
  34: 'invalidDNSyntax',
  48: 'inappropriateAuthentication',
  49: 'invalidCredentials',
  50: 'insufficientAccessRights',
  51: 'busy',
  52: 'unavailable',
  53: 'unwillingToPerform',
  80: 'other',
  248: 'noResult',
};

/**
 * Result codes of a passing condition: the server is slow, busy, shutting down or failed internally,
 * or the lock of an account changed between the adapter's read and its conditional write (16, 19 and
 * 20 only arise from those writes). 248 is ldapts' own: the connection closed before the answer came.
 */
const TRANSIENT_CODES = new Set([1, 3, 16, 19, 20, 51, 52, 80, 248]);

const LOCK_CHANGED = 'the lock of the account changed while the adapter changed it; the retry reads it again';

const HINTS: Record<number, string> = {
  4: 'the directory limits how many entries the adapter may read: lift the size limit for its bind DN (OpenLDAP: limits dn.exact="<bindDn>" size=unlimited)',
  8: 'the directory requires a protected connection: use an ldaps:// URL',
  13: 'the directory requires a protected connection: use an ldaps:// URL',
  16: LOCK_CHANGED,
  17: 'the directory does not know pwdAccountLockedTime: is the ppolicy overlay configured?',
  19: LOCK_CHANGED,
  20: LOCK_CHANGED,
  32: 'check baseDn of the system',
  48: 'check bindDn and bindPassword of the system',
  49: "check bindDn and bindPassword of the system, and that the adapter's own account is not locked",
  50: "the adapter's bind DN needs write access to pwdAccountLockedTime of the accounts and read access to the attributes of the account filter (see the README)",
  53: 'is the url a read-only replica? Point it at a server that accepts writes',
};

/** The server answered (with an LDAP result code), as opposed to a failed or lost connection. */
export function isServerAnswer(error: unknown): error is ResultCodeError {
  return error instanceof ResultCodeError;
}

function serverMessage(error: ResultCodeError): string {
  // ldapts appends " Code: 0x31" to the server's diagnostic message (which is often empty).
  return error.message.replace(/\s*Code: 0x[0-9a-f]+$/i, '').trim();
}

/**
 * Sorts an error from the directory or the connection into retriable and permanent. Answers of the
 * server are deterministic (a missing privilege stays missing) unless they describe a passing
 * condition; errors without a result code come from the network or the client (refused, reset,
 * timed out) and pass.
 */
export function classifyLdapFailure(error: unknown): LdapFailure {
  if (!isServerAnswer(error)) return { outcome: 'failed-retriable', detail: describeError(error) };
  const { code } = error;
  const message = serverMessage(error);
  const hint = HINTS[code];
  const name = RESULT_NAMES[code] ?? error.name;
  return {
    outcome: TRANSIENT_CODES.has(code) ? 'failed-retriable' : 'failed-permanent',
    detail: `${name} (LDAP result ${code})${message ? ` "${message}"` : ''}${hint ? `: ${hint}` : ''}`,
  };
}
