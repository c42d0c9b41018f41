import { goldenMessages } from '../golden';
import { canonicalJson } from './canonical-json';
import { signMessage, verifyMessage } from './message-signature';
import { generateSigningKeyPair, parsePrivateKey, publicKeyFingerprint, publicKeyRing } from './signing-keys';

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
