import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Ed25519 signing and verification of detached signatures, through libsodium (`sodium-native`) where it
 * loads, else through Node's crypto (OpenSSL). Both implement RFC 8032, and Ed25519 signatures are
 * deterministic: the same key and bytes give the same signature either way. libsodium verifies in about
 * half the time OpenSSL takes through `crypto.verify` (bench/README.md, finding 21) — and every decision an
 * adapter takes and every report the policy service records is verified.
 *
 * Keys stay `KeyObject`s everywhere else; their raw bytes are derived once per key object.
 *
 * libsodium is the stricter of the two: it also refuses signatures under small-order ("weak") public keys,
 * which OpenSSL accepts. Keys generated honestly are never such keys; a forger who registered one could at
 * most make processes on different implementations disagree about its own signatures.
 */
interface Sodium {
  crypto_sign_BYTES: number;
  crypto_sign_PUBLICKEYBYTES: number;
  crypto_sign_SECRETKEYBYTES: number;
  crypto_sign_seed_keypair(publicKey: Buffer, secretKey: Buffer, seed: Buffer): void;
  crypto_sign_detached(signature: Buffer, message: Buffer, secretKey: Buffer): void;
  crypto_sign_verify_detached(signature: Buffer, message: Buffer, publicKey: Buffer): boolean;
}

function loadSodium(): Sodium | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('sodium-native') as Sodium;
  } catch {
    return null; // no prebuilt binary for this platform: Node's crypto does the same, slower
  }
}

const sodium = loadSodium();

/** Which implementation signs and verifies in this process (the services log it when they start). */
export const ED25519_IMPLEMENTATION: 'libsodium' | 'node' = sodium ? 'libsodium' : 'node';

/** libsodium's 64-byte secret keys and 32-byte public keys, derived once per key object. */
const secretKeys = new WeakMap<KeyObject, Buffer>();
const publicKeys = new WeakMap<KeyObject, Buffer>();

/** libsodium's secret key (seed and public key) of a private key object. */
function rawSecretKey(key: KeyObject): Buffer {
  let raw = secretKeys.get(key);
  if (!raw) {
    const s = sodium!;
    assertEd25519(key, 'private');
    const seed = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
    raw = Buffer.alloc(s.crypto_sign_SECRETKEYBYTES);
    s.crypto_sign_seed_keypair(Buffer.alloc(s.crypto_sign_PUBLICKEYBYTES), raw, seed);
    seed.fill(0);
    secretKeys.set(key, raw);
  }
  return raw;
}

/** The 32 bytes of a public key object (or of a private key's public half). */
function rawPublicKey(key: KeyObject): Buffer {
  let raw = publicKeys.get(key);
  if (!raw) {
    assertEd25519(key, key.type === 'private' ? 'private' : 'public');
    const publicKey = key.type === 'private' ? createPublicKey(key) : key;
    raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    publicKeys.set(key, raw);
  }
  return raw;
}

function assertEd25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key.asymmetricKeyType !== 'ed25519' || key.type !== type) {
    throw new Error(`not an Ed25519 ${type} key: ${key.asymmetricKeyType ?? ''} ${key.type}`.trimEnd());
  }
}

/** The Ed25519 signature of `data` by `privateKey`. */
export function ed25519Sign(privateKey: KeyObject, data: Buffer): Buffer {
  if (!sodium) return sign(null, data, privateKey);
  const signature = Buffer.alloc(sodium.crypto_sign_BYTES);
  sodium.crypto_sign_detached(signature, data, rawSecretKey(privateKey));
  return signature;
}

/** Whether `signature` is `publicKey`'s Ed25519 signature of `data`. */
export function ed25519Verify(publicKey: KeyObject, data: Buffer, signature: Buffer): boolean {
  if (!sodium) return verify(null, data, publicKey, signature);
  if (signature.length !== sodium.crypto_sign_BYTES) return false;
  return sodium.crypto_sign_verify_detached(signature, data, rawPublicKey(publicKey));
}
