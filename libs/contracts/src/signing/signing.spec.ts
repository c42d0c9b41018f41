import { goldenMessages } from '../golden';
import { canonicalJson } from './canonical-json';
import { signMessage, verifyMessage } from './message-signature';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKeyPair, parsePrivateKey, parsePublicKeyText, publicKeyFingerprint, publicKeyRing } from './signing-keys';

const policy = generateSigningKeyPair();
const attacker = generateSigningKeyPair();
const policyKey = { keyId: 'policy-1', privateKey: parsePrivateKey(policy.privateKeyPem) };
const trusted = publicKeyRing({ 'policy-1': policy.publicKeyPem });

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: true, y: null }], c: undefined } })).toBe('{"a":{"d":[2,{"y":null,"z":true}]},"b":1}');
  });

  it('gives the same bytes whatever the key order on the wire', () => {
    const reordered = JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(goldenMessages.systemAccessChangedV1).reverse())));
    expect(canonicalJson(reordered)).toBe(canonicalJson(goldenMessages.systemAccessChangedV1));
  });

  it('refuses values JSON cannot carry faithfully', () => {
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/function/);
  });
});

describe('message signatures', () => {
  const signed = signMessage(goldenMessages.systemAccessChangedV1, policyKey);

  it('verifies a signed message after a round trip through JSON', () => {
    expect(verifyMessage(JSON.parse(JSON.stringify(signed)), trusted)).toEqual({ valid: true, keyId: 'policy-1' });
  });

  it('reports an unsigned message', () => {
    expect(verifyMessage(goldenMessages.systemAccessChangedV1, trusted)).toEqual({ valid: false, reason: 'unsigned' });
    expect(verifyMessage('not an object', trusted)).toEqual({ valid: false, reason: 'unsigned' });
  });

  it('reports a key it does not trust, even with a valid signature by that key', () => {
    const forged = signMessage(goldenMessages.systemAccessChangedV1, { keyId: 'policy-2', privateKey: parsePrivateKey(attacker.privateKeyPem) });
    expect(verifyMessage(forged, trusted)).toEqual({ valid: false, reason: 'unknown-key', keyId: 'policy-2' });
  });

  it('reports a signature by another key under a trusted key id', () => {
    const forged = signMessage(goldenMessages.systemAccessChangedV1, { keyId: 'policy-1', privateKey: parsePrivateKey(attacker.privateKeyPem) });
    expect(verifyMessage(forged, trusted)).toMatchObject({ valid: false, reason: 'bad-signature' });
  });

  it.each([
    ['the desired state', (m: typeof signed) => ({ ...m, data: { ...m.data, desiredState: 'active' } })],
    ['the generation', (m: typeof signed) => ({ ...m, generation: m.generation + 1 })],
    ['an added field', (m: typeof signed) => ({ ...m, extra: 1 })],
    ['the key id', (m: typeof signed) => ({ ...m, keyId: 'policy-0' })],
  ])('detects a change of %s after signing', (_what, tamper) => {
    const ring = publicKeyRing({ 'policy-1': policy.publicKeyPem, 'policy-0': policy.publicKeyPem });
    expect(verifyMessage(tamper(signed), ring)).toMatchObject({ valid: false, reason: 'bad-signature' });
  });

  it('fingerprints a key pair the same from either half', () => {
    expect(publicKeyFingerprint(parsePrivateKey(policy.privateKeyPem))).toHaveLength(16);
    expect(publicKeyFingerprint(parsePrivateKey(policy.privateKeyPem))).not.toBe(publicKeyFingerprint(parsePrivateKey(attacker.privateKeyPem)));
  });
});

describe('parsePublicKeyText (keys that arrive as input)', () => {
  const pair = generateSigningKeyPair();
  const body = pair.publicKeyPem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').trim();
  const fingerprint = publicKeyFingerprint(parsePrivateKey(pair.privateKeyPem));

  it('reads one SPKI PEM block, or only its base64 body, with surrounding white space', () => {
    expect(publicKeyFingerprint(parsePublicKeyText(pair.publicKeyPem))).toBe(fingerprint);
    expect(publicKeyFingerprint(parsePublicKeyText(`\n  ${pair.publicKeyPem}\r\n`))).toBe(fingerprint);
    expect(publicKeyFingerprint(parsePublicKeyText(body))).toBe(fingerprint);
  });

  it('never reads a file: a path, even of a readable key file, is refused without touching it', () => {
    const dir = mkdtempSync(join(tmpdir(), '-----BEGIN-'));
    const file = join(dir, 'key.pem');
    writeFileSync(file, pair.publicKeyPem);
    try {
      for (const text of [file, `${dir}/../${dir.split('/').pop()}/key.pem`, `junk-----BEGIN PUBLIC KEY-----${body}`]) {
        expect(() => parsePublicKeyText(text)).toThrow('expected exactly one "-----BEGIN PUBLIC KEY-----" block');
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('refuses a private key, two blocks, text around the block, another key type, and garbage, without quoting the input', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const cases: [string, string][] = [
      [pair.privateKeyPem, 'expected exactly one'],
      [`${pair.publicKeyPem}${pair.publicKeyPem}`, 'expected exactly one'],
      [`${pair.publicKeyPem}\u001b[31mjunk`, 'expected exactly one'],
      [`comment\n${pair.publicKeyPem}`, 'expected exactly one'],
      [rsa, 'must be an Ed25519 key, not rsa'],
      [`${body}=AAAA`, 'expected exactly one'], // junk after the padding, which Node's base64 would take
      [`-----BEGIN PUBLIC KEY-----${' '.repeat(9_000)}!`, 'expected exactly one'], // cubic for a backtracking pattern
      [`-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----${' '.repeat(10_000)}x`, 'expected exactly one'],
      ['c2VjcmV0IHRleHQ=', 'not a DER-encoded SPKI public key'],
    ];
    for (const [text, expected] of cases) {
      let message = '';
      try {
        parsePublicKeyText(text);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toContain(expected);
      expect(message).not.toContain('secret');
      expect(message).not.toContain(body.slice(0, 20));
    }
  });
});
