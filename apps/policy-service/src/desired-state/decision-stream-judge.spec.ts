import { envelopeHeader, generateSigningKeyPair, parsePrivateKey, signMessage, verifyMessage } from '@portcullis/contracts';
import { createPublicKey } from 'node:crypto';
import { DecisionStreamJudge, type WatchedRecord } from './desired-state.watcher';

const own = { keyId: 'policy-1', privateKey: parsePrivateKey(generateSigningKeyPair().privateKeyPem) };
const other = { keyId: 'policy-1', privateKey: parsePrivateKey(generateSigningKeyPair().privateKeyPem) };
const ownPublic = createPublicKey(own.privateKey);

let offset = 0;
function record(key: string | null, message: object | null, key_ = own, partition = 0): WatchedRecord {
  const value = message === null ? null : Buffer.from(JSON.stringify(signMessage(message, key_)));
  return { key, value, partition, offset: String(offset++) };
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

  it('judges each partition apart: a genuine older record in one partition read after a newer one in another is no replay', () => {
    const subject = judge();
    const before = decision('2026-11-28T10:00:00Z', 1); // written before routing, in the system id's partition
    const after = decision('2026-11-28T10:05:00Z', 2); // routed, in the adapter's partition
    expect(subject.judge(record('stock', after, own, 2))).toBeNull();
    expect(subject.judge(record('stock', before, own, 0))).toBeNull();
    // ... while a replay within one partition is still found.
    expect(subject.judge(record('stock', before, own, 2))).toMatchObject({ reason: 'older-than-the-last-published', severity: 'high' });
  });

  describe('with the system route', () => {
    const route = { adapterId: 'pg-main', partition: 1 };

    it('judges records in the route as before', () => {
      const subject = judge();
      expect(subject.judge(record('stock', decision('2026-11-28T10:05:00Z', 2), own, 1), route)).toBeNull();
      expect(subject.judge(record('stock', decision('2026-11-28T10:00:00Z', 1), own, 1), route)).toMatchObject({
        reason: 'older-than-the-last-published',
        severity: 'high',
      });
      expect(subject.judge(record('stock', null, own, 1), route)).toMatchObject({ reason: 'tombstone', severity: 'high' });
      expect(subject.judge(record('stock', null, own, 1), route)?.route).toBeUndefined();
    });

    it('finds a genuine decision outside the route misrouted, of medium severity (written before routing)', () => {
      const subject = judge();
      const genuine = decision('2026-11-28T10:00:00Z', 1);
      expect(subject.judge(record('stock', genuine, own, 0), route)).toEqual(
        expect.objectContaining({ systemId: 'stock', reason: 'misrouted', severity: 'medium', route, alsoFound: undefined, claimedMessageId: genuine.messageId }),
      );
    });

    it('finds a forged record, a tombstone, a replay or a re-keyed decision outside the route misrouted, of high severity', () => {
      const subject = judge();
      expect(subject.judge(record('stock', decision('2026-11-28T10:00:00Z', 4), other, 2), route)).toMatchObject({
        reason: 'misrouted',
        severity: 'high',
        alsoFound: 'not-signed-by-the-service',
      });
      expect(subject.judge(record('stock', null, own, 2), route)).toMatchObject({ reason: 'misrouted', severity: 'high', alsoFound: 'tombstone' });
      expect(subject.judge(record('stock', decision('2026-11-28T10:00:00Z', 1, 'ledger'), own, 2), route)).toMatchObject({
        reason: 'misrouted',
        severity: 'high',
        alsoFound: 'under-another-key',
      });
      const old = decision('2026-11-28T10:00:00Z', 1);
      expect(subject.judge(record('stock', decision('2026-11-28T10:05:00Z', 2), own, 0), route)).toMatchObject({ severity: 'medium' });
      expect(subject.judge(record('stock', old, own, 0), route)).toMatchObject({
        reason: 'misrouted',
        severity: 'high',
        alsoFound: 'older-than-the-last-published',
      });
    });

    it('ignores records without a key, wherever they are', () => {
      expect(judge().judge(record(null, null, own, 0), route)).toBeNull();
    });
  });
});
