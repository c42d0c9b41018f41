import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys look like `pcl_<id>_<secret>`:
 * - `pcl_` makes them recognisable (secret scanners, logs, the `Bearer` header);
 * - `<id>`: 16 hex characters, the row's primary key — not secret, it names the key in lists and audits;
 * - `<secret>`: 32 random bytes (256 bits), base64url (43 characters).
 * Only SHA-256 of the whole key is stored. A slow password hash is not needed: with 256 random bits
 * there is nothing to guess, and a fast hash keeps every request cheap.
 */
export const API_KEY_PATTERN = /^pcl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const ID_BYTES = 8;
const SECRET_BYTES = 32;

export interface GeneratedApiKey {
  id: string;
  /** The whole key, shown to its creator once and never stored. */
  key: string;
  /** SHA-256 of `key`, the only form stored. */
  hash: Buffer;
}

export function generateApiKey(): GeneratedApiKey {
  const id = randomBytes(ID_BYTES).toString('hex');
  const key = `pcl_${id}_${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { id, key, hash: hashApiKey(key) };
}

/** The id a presented key names, or null if it is not shaped like one of ours. Says nothing about validity. */
export function parseApiKeyId(presented: string): string | null {
  return API_KEY_PATTERN.exec(presented)?.[1] ?? null;
}

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** Whether a presented key matches a stored hash, in constant time. */
export function apiKeyMatches(presented: string, storedHash: Buffer): boolean {
  const presentedHash = hashApiKey(presented);
  return storedHash.length === presentedHash.length && timingSafeEqual(presentedHash, storedHash);
}
