import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type SigningKey } from '@portcullis/contracts';
import { createHash } from 'node:crypto';
import {
  chainEntryHash,
  chainEntryTemplate,
  ChainVerifier,
  checkExportConsistency,
  exportJsonLines,
  GENESIS_HASH,
  linkEntries,
  signCheckpoint,
  trustKeys,
  trustKeysById,
  verifyAuditExport,
  type AuditCheckpoint,
  type ChainEntry,
  type ChainItem,
  type CheckpointWriterProblem,
  type ExportKey,
} from './audit-chain';
import { csvEntryLine, csvField, csvHeaderLine } from './audit-csv';

const policyPair = generateSigningKeyPair();
const attackerPair = generateSigningKeyPair();
const policy: SigningKey = { keyId: 'policy-1', privateKey: parsePrivateKey(policyPair.privateKeyPem) };
const attacker: SigningKey = { keyId: 'policy-1', privateKey: parsePrivateKey(attackerPair.privateKeyPem) };
const trusted = trustKeysById({ 'policy-1': parsePublicKey(policyPair.publicKeyPem) });
const keys: ExportKey[] = [{ keyId: 'policy-1', algorithm: 'Ed25519', publicKeyPem: policyPair.publicKeyPem }];

function chain(count: number): ChainEntry[] {
  return linkEntries(
    { seq: 0, hash: GENESIS_HASH },
    Array.from({ length: count }, (_, i) => ({
      occurredAt: new Date(Date.UTC(2026, 0, 1, 12, 0, i, 123)).toISOString(),
      actor: 'user:alice',
      action: i % 2 ? 'group.revoked' : 'system.registered',
      groupId: 'back-office',
      systemId: null,
      commandId: null,
      reason: `reason ${i + 1}`,
      incidentRef: 'INC-1',
      sourceAddress: '10.0.0.7',
      details: { before: { state: 'active' }, after: { state: 'revoked' }, n: i },
    })),
  );
}

const checkpointAt = (entries: ChainEntry[], seq: number, key: SigningKey = policy): AuditCheckpoint =>
  signCheckpoint({ seq, headHash: entries.find((e) => e.seq === seq)!.hash, createdAt: '2026-01-01T13:00:00.000Z' }, key);

/** Entries in order with each checkpoint right after the entry at its seq. */
function items(entries: ChainEntry[], checkpoints: AuditCheckpoint[]): ChainItem[] {
  const out: ChainItem[] = [];
  const pending = [...checkpoints].sort((a, b) => a.seq - b.seq);
  for (const entry of entries) {
    out.push({ kind: 'entry', entry });
    while (pending.length && pending[0].seq <= entry.seq) out.push({ kind: 'checkpoint', checkpoint: pending.shift()! });
  }
  for (const checkpoint of pending) out.push({ kind: 'checkpoint', checkpoint });
  return out;
}

function verify(entries: ChainEntry[], checkpoints: AuditCheckpoint[] = [], storedHead?: { seq: number; hash: string }) {
  const verifier = new ChainVerifier(trusted);
  for (const item of items(entries, checkpoints)) {
    if (item.kind === 'entry') verifier.addEntry(item.entry);
    else verifier.addCheckpoint(item.checkpoint);
  }
  return verifier.finish(storedHead);
}

async function exportOf(
  entries: ChainEntry[],
  checkpoints: AuditCheckpoint[] = [],
  signing = policy,
  options: { exportedAt?: string; writerProblem?: CheckpointWriterProblem } = {},
): Promise<string[]> {
  const lines: string[] = [];
  const exportedAt = options.exportedAt ?? '2026-01-02T00:00:00.000Z';
  for await (const line of exportJsonLines(items(entries, checkpoints), { exportedAt, keys, signing, writerProblem: options.writerProblem })) {
    lines.push(line.replace(/\n$/, ''));
  }
  return lines;
}

describe('audit hash chain', () => {
  it('pins the hash: SHA-256 of the previous hash + canonical JSON of exactly the content fields', () => {
    const [first] = linkEntries({ seq: 0, hash: GENESIS_HASH }, [
      {
        occurredAt: '2026-01-01T00:00:00.000Z',
        actor: 'user:alice',
        action: 'group.revoked',
        groupId: 'g',
        systemId: null,
        commandId: null,
        reason: 'r',
        incidentRef: null,
        sourceAddress: '::1',
        details: { b: 1, a: [true, null] },
      },
    ]);
    const canonical =
      '{"action":"group.revoked","actor":"user:alice","commandId":null,"details":{"a":[true,null],"b":1},"groupId":"g",' +
      '"incidentRef":null,"occurredAt":"2026-01-01T00:00:00.000Z","reason":"r","seq":1,"sourceAddress":"::1","systemId":null}';
    expect(first.prevHash).toBe('0'.repeat(64));
    expect(first.hash).toBe(createHash('sha256').update(GENESIS_HASH + canonical).digest('hex'));
    // Key order of details and extra properties on the object do not change the hash.
    expect(chainEntryHash(GENESIS_HASH, { ...first, details: { a: [true, null], b: 1 }, kind: 'entry' } as ChainEntry)).toBe(first.hash);
  });

  it('cuts an entry into the template the database links at commit: the same text, so the same hash', () => {
    const tricky = {
      actor: 'user:"o\'brien"\\',
      action: 'group.revoked',
      groupId: 'g',
      systemId: null,
      commandId: '6f1c1c1e-0000-4000-8000-000000000001',
      // Text that looks like the fields the template cuts around, control characters, non-ASCII and U+2028.
      reason: '"occurredAt":"x","seq":1 \u0000\n\t é 東京 🚨 \u2028',
      incidentRef: null,
      sourceAddress: '::1',
      details: { seq: 'seq-x', occurredAt: 'time-x', nested: { z: [1, 'two', null], a: true } },
    };
    for (const [seq, occurredAt] of [
      [1, '2026-01-01T00:00:00.000Z'],
      [987654321, '2026-11-29T23:59:59.999Z'],
    ] as const) {
      const { head, middle, tail } = chainEntryTemplate(tricky);
      const text = head + occurredAt + middle + String(seq) + tail;
      const prevHash = 'ab'.repeat(32);
      expect(createHash('sha256').update(prevHash + text, 'utf8').digest('hex')).toBe(chainEntryHash(prevHash, { ...tricky, seq, occurredAt }));
    }
  });

  it('links each entry to the previous one', () => {
    const entries = chain(3);
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(entries[1].prevHash).toBe(entries[0].hash);
    expect(entries[2].prevHash).toBe(entries[1].hash);
  });

  it('verifies an intact chain with its checkpoints', () => {
    const entries = chain(10);
    const report = verify(entries, [checkpointAt(entries, 4), checkpointAt(entries, 10)], { seq: 10, hash: entries[9].hash });
    expect(report).toEqual({ intact: true, entries: 10, checkpoints: 2, headSeq: 10, headHash: entries[9].hash, breaks: 0 });
  });

  it('verifies an empty chain', () => {
    expect(verify([], [], { seq: 0, hash: GENESIS_HASH })).toMatchObject({ intact: true, entries: 0, headSeq: 0, headHash: GENESIS_HASH });
  });

  it('pinpoints an edited entry', () => {
    const entries = chain(6);
    entries[3] = { ...entries[3], reason: 'edited afterwards' };
    const report = verify(entries);
    expect(report.intact).toBe(false);
    expect(report.firstBreak).toMatchObject({ seq: 4, reason: 'hash-mismatch', actual: entries[3].hash });
    expect(report.breaks).toBe(1);
  });

  it('pinpoints an edited entry whose hash was recomputed: the next entry no longer links', () => {
    const entries = chain(6);
    const edited = { ...entries[3], details: { before: {}, after: {} } };
    entries[3] = { ...edited, hash: chainEntryHash(edited.prevHash, edited) };
    expect(verify(entries).firstBreak).toMatchObject({ seq: 5, reason: 'link-mismatch', expected: entries[3].hash });
  });

  it('reports a deleted entry as a gap at its seq', () => {
    const entries = chain(6);
    entries.splice(2, 1);
    expect(verify(entries).firstBreak).toMatchObject({ seq: 3, reason: 'gap', expected: 3, actual: 4 });
  });

  it('reports reordered entries at the first position that changed', () => {
    const entries = chain(6);
    [entries[2], entries[4]] = [entries[4], entries[2]];
    expect(verify(entries).firstBreak).toMatchObject({ seq: 3, reason: 'gap' });
    // Swapping the seq numbers too (as a database edit would) breaks the link at the first of them.
    const swapped = chain(6);
    [swapped[2], swapped[4]] = [{ ...swapped[4], seq: 3 }, { ...swapped[2], seq: 5 }];
    expect(verify(swapped).firstBreak).toMatchObject({ seq: 3, reason: 'link-mismatch' });
  });

  it('reports a repeated entry as out of order', () => {
    const entries = chain(4);
    entries.splice(3, 0, entries[1]);
    expect(verify(entries).firstBreak).toMatchObject({ seq: 2, reason: 'out-of-order', expected: 4 });
  });

  it('detects entries cut off the end through a signed checkpoint or the stored head', () => {
    const entries = chain(8);
    const checkpoint = checkpointAt(entries, 8);
    const cut = entries.slice(0, 6);
    expect(verify(cut, [checkpoint]).firstBreak).toMatchObject({ seq: 8, reason: 'checkpoint-mismatch' });
    expect(verify(cut, [], { seq: 8, hash: entries[7].hash }).firstBreak).toMatchObject({ reason: 'head-mismatch' });
    // Without either, a shorter chain is consistent: that is what checkpoints are for.
    expect(verify(cut).intact).toBe(true);
  });

  it('detects a rewritten tail through the checkpoint signed before', () => {
    const entries = chain(6);
    const checkpoint = checkpointAt(entries, 5);
    const rewritten = linkEntries({ seq: 3, hash: entries[2].hash }, entries.slice(3).map((e) => ({ ...e, reason: 'rewritten' })));
    const report = verify([...entries.slice(0, 3), ...rewritten], [checkpoint]);
    expect(report.firstBreak).toMatchObject({ seq: 5, reason: 'checkpoint-mismatch', expected: entries[4].hash, actual: rewritten[1].hash });
  });

  it('rejects a checkpoint with a bad signature or an unknown key', () => {
    const entries = chain(4);
    expect(verify(entries, [checkpointAt(entries, 3, attacker)]).firstBreak).toMatchObject({ seq: 3, reason: 'checkpoint-signature' });
    const unknown = checkpointAt(entries, 3, { ...policy, keyId: 'policy-0' });
    expect(verify(entries, [unknown]).firstBreak).toMatchObject({ reason: 'checkpoint-signature', actual: 'unknown-key (key policy-0)' });
    const moved = { ...checkpointAt(entries, 3), seq: 2, headHash: entries[1].hash };
    expect(verify(entries, [moved]).firstBreak).toMatchObject({ seq: 2, reason: 'checkpoint-signature' });
  });

  it('continues a segment from a trusted head', () => {
    const entries = chain(6);
    const verifier = new ChainVerifier(trusted, { seq: 3, hash: entries[2].hash });
    for (const entry of entries.slice(3)) verifier.addEntry(entry);
    expect(verifier.finish({ seq: 6, hash: entries[5].hash }).intact).toBe(true);
  });
});

describe('audit export', () => {
  const entries = chain(12);
  const checkpoints = [checkpointAt(entries, 5), checkpointAt(entries, 12)];

  it('verifies a complete export with the trusted key and with the key in its header', async () => {
    const lines = await exportOf(entries, checkpoints);
    expect(JSON.parse(lines[0])).toMatchObject({ kind: 'header', format: 'portcullis-audit-export', version: 1, keys });
    expect(JSON.parse(lines[lines.length - 1])).toMatchObject({ kind: 'end', lastSeq: 12, entries: 12, checkpoints: 2 });
    const withKey = await verifyAuditExport(lines, trustKeys([parsePublicKey(policyPair.publicKeyPem)]));
    expect(withKey).toMatchObject({ intact: true, entries: 12, checkpoints: 2, headSeq: 12, trailer: true, breaks: 0 });
    expect(await verifyAuditExport(lines)).toMatchObject({ intact: true });
  });

  it('detects a truncated export', async () => {
    const lines = await exportOf(entries, checkpoints);
    const cut = await verifyAuditExport(lines.slice(0, -3), trusted);
    expect(cut).toMatchObject({ intact: false, trailer: false, firstBreak: { reason: 'truncated' } });
    // Cut before the last checkpoint: both it and the missing trailer point at the truncation.
    expect((await verifyAuditExport(lines.slice(0, 8), trusted)).firstBreak?.reason).toBe('truncated');
  });

  it('pinpoints a tampered line', async () => {
    const lines = await exportOf(entries, checkpoints);
    const index = lines.findIndex((line) => line.includes('"seq":7,'));
    lines[index] = lines[index].replace('reason 7', 'reason seven');
    expect((await verifyAuditExport(lines, trusted)).firstBreak).toMatchObject({ seq: 7, reason: 'hash-mismatch', line: index + 1 });
  });

  it('detects a removed line even with the trailer counts adjusted, through its signature', async () => {
    const lines = await exportOf(entries, checkpoints);
    const trailer = JSON.parse(lines[lines.length - 1]);
    lines[lines.length - 1] = JSON.stringify({ ...trailer, entries: 11 });
    lines.splice(lines.findIndex((line) => line.includes('"seq":12,') && line.includes('"kind":"entry"')), 1);
    const report = await verifyAuditExport(lines, trusted);
    expect(report.intact).toBe(false);
    expect(report.firstBreak?.reason).toBe('trailer-signature');
  });

  it('refuses anything after the trailer and a file without a header', async () => {
    const lines = await exportOf(entries, checkpoints);
    expect((await verifyAuditExport([...lines, lines[3]], trusted)).firstBreak).toMatchObject({ reason: 'malformed' });
    expect((await verifyAuditExport(lines.slice(1), trusted)).firstBreak).toMatchObject({ reason: 'malformed', line: 1 });
    expect((await verifyAuditExport([], trusted)).intact).toBe(false);
  });

  it('trusting the export\'s own key proves integrity only: a forger re-signs everything with his key', async () => {
    const forged = chain(12).map((e) => ({ ...e }));
    const forgedCheckpoints = [checkpointAt(forged, 12, { keyId: 'policy-1', privateKey: attacker.privateKey })];
    const lines = await exportOf(forged, forgedCheckpoints, attacker);
    lines[0] = JSON.stringify({ ...JSON.parse(lines[0]), keys: [{ keyId: 'policy-1', algorithm: 'Ed25519', publicKeyPem: attackerPair.publicKeyPem }] });
    expect((await verifyAuditExport(lines)).intact).toBe(true);
    const report = await verifyAuditExport(lines, trustKeys([parsePublicKey(policyPair.publicKeyPem)]));
    expect(report.firstBreak).toMatchObject({ seq: 12, reason: 'checkpoint-signature' });
  });
});

describe('audit export consistency (does a new export extend an earlier one?)', () => {
  const entries = chain(12);
  const checkpoints = [checkpointAt(entries, 4), checkpointAt(entries, 10)];
  const later = { exportedAt: '2026-02-01T00:00:00.000Z' };

  /**
   * What a database superuser can do without the signing key: edit entry `seq`, re-hash every entry after it,
   * move the head, delete the checkpoints at or after `seq` — then the service signs on (new entries, a new
   * checkpoint at the forged head, the export's trailer). The result verifies on its own.
   */
  function rewrite(seq: number, appended = 3) {
    const base = chain(12 + appended);
    const edited = { ...base[seq - 1], reason: 'routine maintenance' };
    const forged = [...base.slice(0, seq - 1), ...linkEntries({ seq: seq - 1, hash: base[seq - 2]?.hash ?? GENESIS_HASH }, [edited, ...base.slice(seq)])];
    const kept = checkpoints.filter((checkpoint) => checkpoint.seq < seq);
    return { forged, checkpoints: [...kept, checkpointAt(forged, forged.length)] };
  }

  it('is consistent when the new export extends the old one (same history, more entries and checkpoints)', async () => {
    const old = await exportOf(entries.slice(0, 10), checkpoints);
    const grown = chain(15);
    const current = await exportOf(grown, [...checkpoints, checkpointAt(grown, 15)], policy, later);
    const report = await checkExportConsistency(old, current, trusted);
    expect(report).toMatchObject({
      consistent: true,
      headOnChain: true,
      previousHead: { seq: 10, hash: entries[9].hash },
      entriesMatched: 10,
      checkpointsMatched: 2,
      entriesChanged: 0,
      entriesMissing: 0,
      checkpointsMissing: 0,
      problems: 0,
      previous: { intact: true },
    });
    expect(report.firstProblem).toBeUndefined();
    // The same export twice, and a checkpoint signed later at a seq the old export already had.
    expect((await checkExportConsistency(old, old, trusted)).consistent).toBe(true);
    const signedLater = await exportOf(grown, [checkpointAt(grown, 2), ...checkpoints], policy, later);
    expect((await checkExportConsistency(old, signedLater, trusted)).consistent).toBe(true);
    // In one pass with the verification of the new export.
    const both = await verifyAuditExport(current, trusted, { previous: old });
    expect(both).toMatchObject({ intact: true, consistency: { consistent: true } });
  });

  it('pinpoints an entry rewritten before the old head, though the rest was re-hashed and the new export verifies', async () => {
    const old = await exportOf(entries, checkpoints);
    const { forged, checkpoints: forgedCheckpoints } = rewrite(6);
    const current = await exportOf(forged, forgedCheckpoints, policy, later);
    // On its own the rewritten history is flawless: that is the attack.
    expect(await verifyAuditExport(current, trusted)).toMatchObject({ intact: true, breaks: 0 });

    const report = await checkExportConsistency(old, current, trusted);
    expect(report).toMatchObject({
      consistent: false,
      headOnChain: false,
      entriesMatched: 5,
      entriesChanged: 7, // 6 edited, 7..12 re-hashed
      checkpointsMatched: 1,
      checkpointsMissing: 1, // the one at 10, deleted
      firstProblem: { seq: 6, reason: 'entry-changed', expected: entries[5].hash, actual: forged[5].hash },
    });
    expect(report.firstProblem!.detail).toMatch(/entry 6 differs from the previous export \(reason, hash\)/);
    expect(report.firstProblem!.line).toBe(current.findIndex((line) => line.includes('"seq":6,')) + 1);
    expect(report.firstProblem!.previousLine).toBe(old.findIndex((line) => line.includes('"seq":6,')) + 1);

    // The first entry rewritten, too.
    const first = rewrite(1);
    const fromGenesis = await checkExportConsistency(old, await exportOf(first.forged, first.checkpoints, policy, later), trusted);
    expect(fromGenesis.firstProblem).toMatchObject({ seq: 1, reason: 'entry-changed' });
  });

  it('is inconsistent when the old export is not a prefix of the new one', async () => {
    const old = await exportOf(entries, checkpoints);
    // Cut off the end (and the head moved back): the new export is shorter.
    const cut = await checkExportConsistency(old, await exportOf(entries.slice(0, 9), [checkpoints[0]], policy, later), trusted);
    expect(cut).toMatchObject({
      consistent: false,
      headOnChain: false,
      entriesMatched: 9,
      entriesMissing: 3,
      checkpointsMissing: 1,
      firstProblem: { seq: 10, reason: 'entry-missing' },
    });
    expect(cut.firstProblem!.detail).toMatch(/this export ends at seq 9/);
    // Another history altogether.
    const other = linkEntries({ seq: 0, hash: GENESIS_HASH }, entries.map((entry) => ({ ...entry, actor: 'user:mallory' })));
    const different = await checkExportConsistency(old, await exportOf(other, [], policy, later), trusted);
    expect(different).toMatchObject({ consistent: false, entriesMatched: 0, entriesChanged: 12, firstProblem: { seq: 1, reason: 'entry-changed' } });
    // An entry deleted in the middle (the new export does not verify either, but the comparison names it).
    const gap = await checkExportConsistency(old, await exportOf([...entries.slice(0, 6), ...entries.slice(7)], checkpoints, policy, later), trusted);
    expect(gap.firstProblem).toMatchObject({ seq: 7, reason: 'entry-missing' });
  });

  it('reports checkpoints of the old export missing or changed in the new one', async () => {
    const old = await exportOf(entries, checkpoints);
    const missing = await checkExportConsistency(old, await exportOf(entries, [checkpoints[1]], policy, later), trusted);
    expect(missing).toMatchObject({
      consistent: false,
      headOnChain: true,
      entriesChanged: 0,
      entriesMissing: 0,
      checkpointsMatched: 1,
      checkpointsMissing: 1,
      problems: 1,
      firstProblem: { seq: 4, reason: 'checkpoint-missing', expected: entries[3].hash },
    });
    expect(missing.firstProblem!.detail).toMatch(/checkpoints were deleted/);
    const resigned = signCheckpoint({ seq: 10, headHash: entries[9].hash, createdAt: '2026-01-01T14:00:00.000Z' }, policy);
    const changed = await checkExportConsistency(old, await exportOf(entries, [checkpoints[0], resigned], policy, later), trusted);
    expect(changed).toMatchObject({ consistent: false, checkpointsChanged: 1, firstProblem: { seq: 10, reason: 'checkpoint-changed' } });
  });

  it('needs a previous export that verifies, with its trailer', async () => {
    const old = await exportOf(entries, checkpoints);
    const current = await exportOf(entries, checkpoints, policy, later);
    const edited = old.map((line) => line.replace('reason 3', 'reason three'));
    const report = await checkExportConsistency(edited, current, trusted);
    expect(report.consistent).toBe(false);
    expect(report.previous.firstBreak).toMatchObject({ seq: 3, reason: 'hash-mismatch' });
    const cut = await checkExportConsistency(old.slice(0, -1), current, trusted);
    expect(cut).toMatchObject({ consistent: false, previousHead: null, previous: { trailer: false } });
    // Signed by someone else: not the trusted key.
    const forged = await checkExportConsistency(await exportOf(entries, [], attacker), current, trusted);
    expect(forged).toMatchObject({ consistent: false, previous: { intact: false, firstBreak: { reason: 'trailer-signature' } } });
  });

  it('reads a trailer in which the service says its checkpoint writer was refusing to sign', async () => {
    const writerProblem: CheckpointWriterProblem = {
      seq: 9,
      reason: 'checkpoint-missing',
      expected: entries[8].hash,
      actual: null,
      detail: 'the checkpoint at seq 9 is gone',
      detectedAt: '2026-01-02T00:00:00.000Z',
    };
    const lines = await exportOf(entries, checkpoints, policy, { writerProblem });
    const report = await verifyAuditExport(lines, trusted);
    expect(report).toMatchObject({ intact: false, breaks: 1, firstBreak: { seq: 9, reason: 'checkpoint-writer', line: lines.length } });
    expect(report.firstBreak!.detail).toMatch(/refused to sign checkpoints .*the checkpoint at seq 9 is gone/);
    // Under the signature: dropping it from the trailer breaks the signature.
    const trailer = JSON.parse(lines[lines.length - 1]);
    delete trailer.writerProblem;
    const stripped = [...lines.slice(0, -1), JSON.stringify(trailer)];
    expect((await verifyAuditExport(stripped, trusted)).firstBreak).toMatchObject({ reason: 'trailer-signature' });
  });
});

describe('audit CSV', () => {
  it('quotes commas, quotes and line breaks, and defuses formulas', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField(null)).toBe('');
    expect(csvField(12)).toBe('12');
  });

  it('writes one row per entry with its hashes and details as JSON', () => {
    const [entry] = chain(1);
    expect(csvHeaderLine()).toBe('seq,occurred_at,actor,action,group_id,system_id,command_id,reason,incident_ref,source_address,details,prev_hash,hash\r\n');
    const row = csvEntryLine(entry);
    expect(row.endsWith(`,${GENESIS_HASH},${entry.hash}\r\n`)).toBe(true);
    expect(row).toContain('"{""before"":{""state"":""active""},""after"":{""state"":""revoked""},""n"":0}"');
  });
});
