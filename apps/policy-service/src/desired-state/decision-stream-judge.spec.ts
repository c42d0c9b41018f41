import { envelopeHeader, generateSigningKeyPair, parsePrivateKey, signMessage, verifyMessage } from '@portcullis/contracts';
import { createPublicKey } from 'node:crypto';
import { DecisionStreamJudge, type WatchedRecord } from './desired-state.watcher';

const own = { keyId: 'policy-1', privateKey: parsePrivateKey(generateSigningKeyPair().privateKeyPem) };
const other = { keyId: 'policy-1', privateKey: parsePrivateKey(generateSigningKeyPair().privateKeyPem) };
const ownPublic = createPublicKey(own.privateKey);

let offset = 0;
function record(key: string | null, message: object | null, key_ = own): WatchedRecord {
  const value = message === null ? null : Buffer.from(JSON.stringify(signMessage(message, key_)));
  return { key, value, partition: 0, offset: String(offset++) };
}

function decision(at: string, generation: number, systemId = 'stock') {
  return { ...envelopeHeader('policy-service', new Date(at)), type: 'system-access.changed', version: 1, generation, data: { systemId } };
}

describe('DecisionStreamJudge', () => {
  const judge = () => new DecisionStreamJudge((raw: unknown) => verifyMessage(raw, (keyId) => (keyId === own.keyId ? ownPublic : undefined)).valid);

  it('takes the service own decisions in the order they were signed, and a duplicate of the latest', () => {
    const subject = judge();
    const first = decision('2026-11-28T10:00:00Z', 1);
    const second = decision('2026-11-28T10:05:00Z', 2);
    expect(subject.judge(record('stock', first))).toBeNull();
    expect(subject.judge(record('stock', second))).toBeNull();
    expect(subject.judge(record('stock', second))).toBeNull(); // the relay published it twice
    expect(subject.judge(record('ledger', decision('2026-11-28T10:00:00Z', 1, 'ledger')))).toBeNull(); // keys are judged apart
  });

  it('finds a genuine older decision appended after a newer one (a replay)', () => {
    const subject = judge();
    const old = decision('2026-11-28T10:00:00Z', 1);
    subject.judge(record('stock', old));
    subject.judge(record('stock', decision('2026-11-28T10:05:00Z', 2)));
    expect(subject.judge(record('stock', old))).toMatchObject({ systemId: 'stock', reason: 'older-than-the-last-published' });
  });

  it('finds a genuine decision for another system published under this key', () => {
    expect(judge().judge(record('ledger', decision('2026-11-28T10:00:00Z', 1, 'stock')))).toMatchObject({ systemId: 'ledger', reason: 'under-another-key' });
  });

  it('finds records the service did not sign, garbage and tombstones; ignores records without a key', () => {
    const subject = judge();
    expect(subject.judge(record('stock', decision('2026-11-28T10:00:00Z', 1), other))).toMatchObject({ reason: 'not-signed-by-the-service' });
    expect(subject.judge({ key: 'stock', value: Buffer.from('{not json'), partition: 0, offset: '99' })).toMatchObject({
      reason: 'not-signed-by-the-service',
    });
    expect(subject.judge(record('stock', null))).toMatchObject({ reason: 'tombstone' });
    expect(subject.judge(record(null, decision('2026-11-28T10:00:00Z', 1), other))).toBeNull();
  });
});
