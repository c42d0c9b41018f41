import type { Request } from 'express';

/** The prefix of every Portcullis API key: `pcl_<id>_<secret>`. */
export const API_KEY_PREFIX = 'pcl_';

/** What a request presents to prove who it is. The value itself is never logged or audited. */
export type PresentedCredential =
  | { kind: 'none' }
  | { kind: 'jwt'; value: string }
  | { kind: 'api-key'; value: string }
  /** Something was sent, but not in a form we accept (Basic auth, two credentials at once, ...). */
  | { kind: 'unusable'; reason: string };

const MAX_CREDENTIAL_LENGTH = 8192;

function header(request: Request, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/**
 * Reads the credential of a request: `Authorization: Bearer <JWT>`, `Authorization: Bearer pcl_...` or
 * `X-API-Key: pcl_...`. Exactly one may be sent.
 */
export function readCredential(request: Request): PresentedCredential {
  const authorization = header(request, 'authorization')?.trim();
  const apiKey = header(request, 'x-api-key')?.trim();
  if (!authorization && !apiKey) return { kind: 'none' };
  if (authorization && apiKey) return { kind: 'unusable', reason: 'both Authorization and X-API-Key sent' };
  if (apiKey) {
    if (apiKey.length > MAX_CREDENTIAL_LENGTH) return { kind: 'unusable', reason: 'credential too long' };
    return { kind: 'api-key', value: apiKey };
  }
  const match = /^Bearer[ ]+(\S+)$/i.exec(authorization!);
  if (!match) return { kind: 'unusable', reason: 'unsupported Authorization scheme (use Bearer)' };
  const value = match[1];
  if (value.length > MAX_CREDENTIAL_LENGTH) return { kind: 'unusable', reason: 'credential too long' };
  return value.startsWith(API_KEY_PREFIX) ? { kind: 'api-key', value } : { kind: 'jwt', value };
}

/** The client address as the rest of the service sees it (`@Ip()`: Express `req.ip`, after `trust proxy`). */
export function sourceAddress(request: Request): string {
  return request.ip ?? request.socket?.remoteAddress ?? 'unknown';
}

/** A value taken from an unverified credential, made safe to store: printable, bounded. */
export function unverifiedText(value: unknown, max = 200): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return undefined;
  // eslint-disable-next-line no-control-regex
  const printable = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return printable.length > max ? `${printable.slice(0, max)}…` : printable;
}

/**
 * Authentication was attempted and failed. `reason` goes to the audit history (never the credential),
 * `publicMessage` to the client.
 */
export class AuthenticationFailure extends Error {
  override readonly name = 'AuthenticationFailure';
  constructor(
    readonly reason: string,
    readonly details: {
      credential: 'jwt' | 'api-key' | 'unusable';
      /** The subject a rejected token claims: NOT verified. */
      unverifiedSubject?: string;
      /** The key id a rejected API key names: NOT verified. */
      unverifiedApiKeyId?: string;
      publicMessage?: string;
    },
  ) {
    super(reason);
  }

  get publicMessage(): string {
    return this.details.publicMessage ?? 'invalid credentials';
  }
}
