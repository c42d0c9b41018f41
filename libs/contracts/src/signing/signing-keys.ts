import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A private key that signs, with the id under which verifiers know its public half. */
export interface SigningKey {
  keyId: string;
  privateKey: KeyObject;
}

/** Looks up a trusted public key by key id; `undefined` for a key it does not know. */
export type PublicKeyLookup = (keyId: string) => KeyObject | undefined;

const SUPPORTED_KEY_TYPES = new Set(['ed25519']);

function pemOrFile(value: string): string {
  const trimmed = value.trim();
  if (trimmed.startsWith('-----BEGIN')) return trimmed;
  return readFileSync(trimmed, 'utf8');
}

function assertSupported(key: KeyObject, what: string): KeyObject {
  if (!SUPPORTED_KEY_TYPES.has(key.asymmetricKeyType ?? '')) {
    throw new Error(`${what} must be an Ed25519 key, not ${key.asymmetricKeyType ?? key.type}`);
  }
  return key;
}

/** Reads an Ed25519 private key given as PKCS#8 PEM text or as the path of a PEM file. */
export function parsePrivateKey(pemOrPath: string): KeyObject {
  return assertSupported(createPrivateKey(pemOrFile(pemOrPath)), 'a signing key');
}

/** Reads an Ed25519 public key given as SPKI PEM text or as the path of a PEM file. */
export function parsePublicKey(pemOrPath: string): KeyObject {
  return assertSupported(createPublicKey(pemOrFile(pemOrPath)), 'a verification key');
}

const BEGIN_PUBLIC_KEY = '-----BEGIN PUBLIC KEY-----';
const END_PUBLIC_KEY = '-----END PUBLIC KEY-----';
/** Strict base64 (padding only at the end), checked after white space is removed. No backtracking. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** Far more than any SPKI PEM (an Ed25519 one is 113 characters): longer text is refused unread. */
const MAX_PUBLIC_KEY_TEXT = 10_000;

/**
 * An Ed25519 public key from text that arrives as input (an API request): exactly one SPKI PEM block
 * (`-----BEGIN PUBLIC KEY-----` … `-----END PUBLIC KEY-----`), or only its base64 body. Never a file path
 * (unlike `parsePublicKey`, for configuration, which reads files), never a private key, nothing around
 * the block. Errors say what is wrong without quoting the input or the crypto library.
 */
export function parsePublicKeyText(text: string): KeyObject {
  const refused = () => new Error('expected exactly one "-----BEGIN PUBLIC KEY-----" block (SPKI PEM) or its base64 body, and nothing else');
  if (text.length > MAX_PUBLIC_KEY_TEXT) throw refused();
  const trimmed = text.trim();
  let body = trimmed;
  if (trimmed.startsWith('-----')) {
    if (!trimmed.startsWith(BEGIN_PUBLIC_KEY) || !trimmed.endsWith(END_PUBLIC_KEY)) throw refused();
    body = trimmed.slice(BEGIN_PUBLIC_KEY.length, trimmed.length - END_PUBLIC_KEY.length);
  }
  const base64 = body.replace(/\s+/g, '');
  if (!BASE64.test(base64)) throw refused(); // also a second block, or anything between the markers
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(base64, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new Error('the text is not a DER-encoded SPKI public key');
  }
  return assertSupported(key, 'a verification key');
}

export function publicKeyPem(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

/** A stable fingerprint of a public key (SHA-256 of its SPKI DER, base64url, 16 characters). */
export function publicKeyFingerprint(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64url').slice(0, 16);
}

/** A fresh Ed25519 key pair as PEM text. */
export function generateSigningKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/**
 * A key ring from `{ "<keyId>": "<SPKI PEM or path>" }`: several keys at once, so a signer can rotate
 * (publish with a new key while verifiers still trust the old one until every message signed with it is gone).
 */
export function publicKeyRing(keys: Record<string, string>): PublicKeyLookup {
  const ring = new Map(Object.entries(keys).map(([keyId, pem]) => [keyId, parsePublicKey(pem)] as const));
  return (keyId) => ring.get(keyId);
}
