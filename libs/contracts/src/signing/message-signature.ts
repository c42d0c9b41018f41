import type { KeyObject } from 'node:crypto';
import { canonicalJson } from './canonical-json';
import { ed25519Sign, ed25519Verify } from './ed25519';
import type { PublicKeyLookup, SigningKey } from './signing-keys';

/** Why a signature was not accepted. */
export type SignatureFailure = 'unsigned' | 'unknown-key' | 'bad-signature';

export type SignatureCheck = { valid: true; keyId: string } | { valid: false; reason: SignatureFailure; keyId?: string };

/** Ed25519 over the bytes; base64url. */
export function signDetached(key: KeyObject, data: string | Buffer): string {
  return ed25519Sign(key, typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url');
}

export function verifyDetached(key: KeyObject, data: string | Buffer, signature: string): boolean {
  try {
    return ed25519Verify(key, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

/** The bytes a message signature covers: the canonical JSON of the whole message without `signature`. */
export function signedBytesOf(message: Record<string, unknown>): string {
  const { signature: _signature, ...signed } = message;
  return canonicalJson(signed);
}

/**
 * Signs an envelope: sets `keyId`, then `signature` over everything else (so the key id is covered too,
 * and moving a signature onto another message or another key id breaks it).
 */
export function signMessage<T extends object>(message: T, key: SigningKey): T & { keyId: string; signature: string } {
  const withKey = { ...message, keyId: key.keyId } as T & { keyId: string };
  const signature = signDetached(key.privateKey, signedBytesOf(withKey as Record<string, unknown>));
  return { ...withKey, signature };
}

/**
 * Checks the signature of a message as it arrived (the parsed JSON, before any schema drops fields a
 * newer producer added — they are signed too). Says why it is not acceptable, if it is not.
 */
export function verifyMessage(message: unknown, trusted: PublicKeyLookup): SignatureCheck {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return { valid: false, reason: 'unsigned' };
  const { keyId, signature } = message as { keyId?: unknown; signature?: unknown };
  if (typeof keyId !== 'string' || typeof signature !== 'string' || keyId === '' || signature === '') {
    return { valid: false, reason: 'unsigned' };
  }
  const key = trusted(keyId);
  if (!key) return { valid: false, reason: 'unknown-key', keyId };
  let bytes: string;
  try {
    bytes = signedBytesOf(message as Record<string, unknown>);
  } catch {
    return { valid: false, reason: 'bad-signature', keyId };
  }
  return verifyDetached(key, bytes, signature) ? { valid: true, keyId } : { valid: false, reason: 'bad-signature', keyId };
}
