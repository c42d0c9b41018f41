import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { ED25519_IMPLEMENTATION, ed25519Sign, ed25519Verify } from './ed25519';

/**
 * libsodium and OpenSSL must be interchangeable for honestly generated keys: a signature made by either
 * verifies with the other, byte for byte the same (Ed25519 is deterministic), and both refuse tampering.
 */
describe('Ed25519 through libsodium', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const data = Buffer.from('{"commandId":"c-1","generation":7,"state":"revoked"}');

  it('is the implementation in use on this platform', () => {
    expect(ED25519_IMPLEMENTATION).toBe('libsodium');
  });

  it('makes the signature OpenSSL makes, and OpenSSL verifies it', () => {
    const signature = ed25519Sign(privateKey, data);
    expect(signature.equals(sign(null, data, privateKey))).toBe(true);
    expect(verify(null, data, publicKey, signature)).toBe(true);
  });

  it('verifies with a private key object too, after signing with it', () => {
    const signature = ed25519Sign(privateKey, data);
    expect(ed25519Verify(privateKey, data, signature)).toBe(true);
  });

  it("verifies OpenSSL's signatures, with keys however they were parsed", () => {
    const signature = sign(null, data, privateKey);
    expect(ed25519Verify(publicKey, data, signature)).toBe(true);
    const pem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    expect(ed25519Verify(createPublicKey(pem), data, signature)).toBe(true);
    const fromPkcs8 = createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    expect(ed25519Sign(fromPkcs8, data).equals(signature)).toBe(true);
  });

  it('refuses another key, other bytes, a flipped bit and a truncated signature', () => {
    const signature = ed25519Sign(privateKey, data);
    expect(ed25519Verify(other.publicKey, data, signature)).toBe(false);
    expect(ed25519Verify(publicKey, Buffer.concat([data, Buffer.from(' ')]), signature)).toBe(false);
    const flipped = Buffer.from(signature);
    flipped[10] ^= 1;
    expect(ed25519Verify(publicKey, data, flipped)).toBe(false);
    expect(ed25519Verify(publicKey, data, signature.subarray(0, 63))).toBe(false);
  });

  it('refuses keys that are not Ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => ed25519Sign(rsa.privateKey, data)).toThrow(/not an Ed25519 (private|public) key/);
    expect(() => ed25519Verify(rsa.publicKey, data, Buffer.alloc(64))).toThrow(/not an Ed25519 (private|public) key/);
  });
});

describe('Ed25519 where libsodium does not load', () => {
  it("falls back to Node's crypto, with the same signatures", () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const data = Buffer.from('bytes');
    jest.isolateModules(() => {
      jest.doMock('sodium-native', () => {
        throw new Error('no prebuilt binary for this platform');
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fallback = require('./ed25519') as typeof import('./ed25519');
      expect(fallback.ED25519_IMPLEMENTATION).toBe('node');
      const signature = fallback.ed25519Sign(privateKey, data);
      expect(signature.equals(sign(null, data, privateKey))).toBe(true);
      expect(fallback.ed25519Verify(publicKey, data, signature)).toBe(true);
      expect(fallback.ed25519Verify(publicKey, Buffer.from('other'), signature)).toBe(false);
    });
    jest.dontMock('sodium-native');
  });
});
