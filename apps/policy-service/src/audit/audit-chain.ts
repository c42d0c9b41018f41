/**
 * The audit trail's hash chain, signed checkpoints and export format: pure functions, no database and no
 * framework, shared by the service (appending, `GET /audit/verify`, `GET /audit/export`) and by the
 * offline verifier (`npm run audit:verify`), so that both agree by construction.
 *
 * Chain: entry n's `hash` = SHA-256 (hex) of the UTF-8 bytes of `prevHash + canonicalJson(content)`, where
 * `prevHash` is entry n-1's hash (64 zeros for the first entry) and `content` is exactly
 * `{ seq, occurredAt, actor, action, groupId, systemId, commandId, reason, incidentRef, sourceAddress, details }`
 * (`occurredAt` as an ISO 8601 string with milliseconds, absent optional values as `null`). Sequence
 * numbers start at 1 and have no gaps. Editing, deleting, inserting or reordering entries breaks the chain
 * at that place; cutting entries off the END is what signed checkpoints (and an export's signed trailer)
 * reveal.
 *
 * Checkpoint: `{ seq, headHash, createdAt, keyId, signature }`, the signature being Ed25519 (base64url) over
 * `canonicalJson({ seq, headHash, createdAt, keyId })` with the policy service's signing key.
 *
 * What a chain stored in one database cannot prove about itself: SHA-256 needs no key, so whoever can write
 * the database (a superuser) can edit an entry, re-hash everything after it, move the stored head and
 * delete the checkpoints that covered the old entries — the result verifies. Two things catch that rewrite:
 * an earlier export kept elsewhere (`checkExportConsistency`: the new export must contain every entry and
 * checkpoint of the old one unchanged, like a Certificate Transparency consistency proof), and the memory of
 * the running policy service, whose checkpoint writer refuses to sign a history that no longer contains what
 * it verified or signed before (audit-trail.service.ts).
 */
import { createHash, randomUUID, type KeyObject } from 'node:crypto';
import { canonicalJson, parsePublicKeyText, signDetached, signedBytesOf, verifyDetached, type SigningKey } from '@portcullis/contracts';

export const GENESIS_HASH = '0'.repeat(64);
export const EXPORT_FORMAT = 'portcullis-audit-export';
export const EXPORT_VERSION = 1;

const HASH_PATTERN = /^[0-9a-f]{64}$/;

/** What an entry's hash covers. */
export interface ChainEntryContent {
  seq: number;
  /** ISO 8601, UTC, milliseconds (`Date.prototype.toISOString`). */
  occurredAt: string;
  actor: string;
  action: string;
  groupId: string | null;
  systemId: string | null;
  commandId: string | null;
  reason: string | null;
  incidentRef: string | null;
  sourceAddress: string | null;
  details: Record<string, unknown>;
}

export interface ChainEntry extends ChainEntryContent {
  prevHash: string;
  hash: string;
}

export interface AuditCheckpoint {
  seq: number;
  headHash: string;
  /** ISO 8601, UTC, milliseconds. */
  createdAt: string;
  keyId: string;
  signature: string;
}

export type ChainBreakReason =
  /** The entry's content does not hash to its stored hash: the entry was changed. */
  | 'hash-mismatch'
  /** The entry's `prevHash` is not the previous entry's hash: an entry before it was removed, replaced or moved. */
  | 'link-mismatch'
  /** A sequence number is missing: entries were deleted. */
  | 'gap'
  /** A sequence number repeats or goes backwards. */
  | 'out-of-order'
  /** A signed checkpoint names a head hash the chain does not have at that seq (or a seq the chain no longer reaches). */
  | 'checkpoint-mismatch'
  /** A checkpoint's signature is invalid or made with a key that is not trusted. */
  | 'checkpoint-signature'
  /** The stored chain head (database) does not match the last entry: entries were cut off the end. */
  | 'head-mismatch'
  /** A line of an export is not what the format says. */
  | 'malformed'
  /** An export ends without its signed trailer. */
  | 'truncated'
  /** An export's trailer disagrees with the lines before it. */
  | 'trailer-mismatch'
  /** An export's trailer signature is invalid or made with a key that is not trusted. */
  | 'trailer-signature'
  /**
   * An entry differs from the one seen before at that seq (in a previous export, or by the running policy
   * service): the history up to there was rewritten, and re-hashed if the chain still verifies.
   */
  | 'entry-changed'
  /** An entry seen before (in a previous export, or by the running policy service) is gone. */
  | 'entry-missing'
  /** A checkpoint differs from the one seen before at that seq. */
  | 'checkpoint-changed'
  /** A checkpoint seen before (in a previous export, or written by the running policy service) is gone: deleted. */
  | 'checkpoint-missing'
  /**
   * The policy service signed this export while its checkpoint writer refused to sign: the database no
   * longer agreed with what the service had verified (the trailer carries the writer's problem).
   */
  | 'checkpoint-writer';

export interface ChainBreak {
  /** Where the chain breaks (null when no sequence number applies). */
  seq: number | null;
  reason: ChainBreakReason;
  expected: string | number | null;
  actual: string | number | null;
  detail: string;
  /** Line of the export (1-based), when verifying an export. */
  line?: number;
  /** Line of the previous export (1-based), when checking that an export extends a previous one. */
  previousLine?: number;
}

/** A problem the policy service's checkpoint writer found, and when it first found it. */
export interface CheckpointWriterProblem extends ChainBreak {
  detectedAt: string;
}

export interface ChainReport {
  intact: boolean;
  entries: number;
  checkpoints: number;
  /** The last entry's seq and hash (0 and the genesis hash when there are none). */
  headSeq: number;
  headHash: string;
  /** The first problem found, in chain order. */
  firstBreak?: ChainBreak;
  /** How many problems were found (after the first, the verifier carries on from the stored values). */
  breaks: number;
}

/**
 * Which public keys may have signed, for a key id: the candidates are tried in turn. Return the keys
 * trusted under that id (or all trusted keys, when the ids of a key supplied out of band are unknown).
 */
export type TrustedKeys = (keyId: string) => KeyObject[];

export function trustKeysById(keys: Map<string, KeyObject> | Record<string, KeyObject>): TrustedKeys {
  const map = keys instanceof Map ? keys : new Map(Object.entries(keys));
  return (keyId) => {
    const key = map.get(keyId);
    return key ? [key] : [];
  };
}

/** Trusts these keys whatever key id a signature names (a key the auditor obtained independently). */
export function trustKeys(keys: KeyObject[]): TrustedKeys {
  return () => keys;
}

/** Exactly the hashed fields, absent optional values as null (extra properties never leak into the hash). */
export function chainEntryContent(entry: ChainEntryContent): ChainEntryContent {
  return {
    seq: entry.seq,
    occurredAt: entry.occurredAt,
    actor: entry.actor,
    action: entry.action,
    groupId: entry.groupId ?? null,
    systemId: entry.systemId ?? null,
    commandId: entry.commandId ?? null,
    reason: entry.reason ?? null,
    incidentRef: entry.incidentRef ?? null,
    sourceAddress: entry.sourceAddress ?? null,
    details: entry.details ?? {},
  };
}

export function chainEntryHash(prevHash: string, content: ChainEntryContent): string {
  return createHash('sha256')
    .update(prevHash + canonicalJson(chainEntryContent(content)), 'utf8')
    .digest('hex');
}

/**
 * An entry's canonical JSON cut where its time and its place in the chain go, for linking it where those are
 * decided: at commit, inside the database (migration `AuditLinkedAtCommit`). For any `occurredAt` and `seq`,
 * `head + occurredAt + middle + String(seq) + tail` is exactly `canonicalJson(chainEntryContent(...))` of
 * the whole entry (keys are sorted, so the time comes before the seq), and its hash is
 * SHA-256(prevHash + that text) as `chainEntryHash` computes it.
 */
export interface ChainEntryTemplate {
  head: string;
  middle: string;
  tail: string;
}

export function chainEntryTemplate(content: Omit<ChainEntryContent, 'seq' | 'occurredAt'>): ChainEntryTemplate {
  // Stand-ins no content can contain (random, and a seq is a number): each must appear exactly once.
  const mark = randomUUID();
  const timeMark = `time-${mark}`;
  const seqMark = `seq-${mark}`;
  const json = canonicalJson(chainEntryContent({ ...content, occurredAt: timeMark, seq: seqMark as unknown as number }));
  const [head, rest] = splitOnce(json, timeMark);
  const [middle, tail] = splitOnce(rest, JSON.stringify(seqMark));
  return { head, middle, tail };
}

function splitOnce(text: string, separator: string): [string, string] {
  const at = text.indexOf(separator);
  if (at < 0 || text.indexOf(separator, at + separator.length) >= 0) throw new Error('an audit entry template needs its stand-in exactly once');
  return [text.slice(0, at), text.slice(at + separator.length)];
}

/** Links entries (in order, after `previous`) into the chain: sets prevHash and hash. */
export function linkEntries(
  previous: { seq: number; hash: string },
  contents: Omit<ChainEntryContent, 'seq'>[],
): ChainEntry[] {
  let seq = previous.seq;
  let prevHash = previous.hash;
  return contents.map((content) => {
    seq += 1;
    const entry = chainEntryContent({ ...content, seq });
    const hash = chainEntryHash(prevHash, entry);
    const linked: ChainEntry = { ...entry, prevHash, hash };
    prevHash = hash;
    return linked;
  });
}

export function checkpointSignedBytes(checkpoint: Omit<AuditCheckpoint, 'signature'>): string {
  return canonicalJson({
    seq: checkpoint.seq,
    headHash: checkpoint.headHash,
    createdAt: checkpoint.createdAt,
    keyId: checkpoint.keyId,
  });
}

export function signCheckpoint(head: { seq: number; headHash: string; createdAt: string }, key: SigningKey): AuditCheckpoint {
  const unsigned = { seq: head.seq, headHash: head.headHash, createdAt: head.createdAt, keyId: key.keyId };
  return { ...unsigned, signature: signDetached(key.privateKey, checkpointSignedBytes(unsigned)) };
}

function signatureCheck(trusted: TrustedKeys, keyId: string, bytes: string, signature: string): 'ok' | 'unknown-key' | 'bad-signature' {
  const candidates = trusted(keyId);
  if (candidates.length === 0) return 'unknown-key';
  return candidates.some((key) => verifyDetached(key, bytes, signature)) ? 'ok' : 'bad-signature';
}

export function checkCheckpointSignature(checkpoint: AuditCheckpoint, trusted: TrustedKeys): 'ok' | 'unknown-key' | 'bad-signature' {
  return signatureCheck(trusted, checkpoint.keyId, checkpointSignedBytes(checkpoint), checkpoint.signature);
}

/**
 * Recomputes the chain as entries and checkpoints stream past, in seq order, each checkpoint right
 * after the entry at its seq (the order of the database reader and of an export). Keeps only the
 * running head, so any length of history verifies in constant memory.
 */
export class ChainVerifier {
  private lastSeq = 0;
  private lastHash = GENESIS_HASH;
  private entries = 0;
  private checkpoints = 0;
  private breaks = 0;
  private firstBreak?: ChainBreak;
  /** Checkpoints naming a seq the chain has not reached yet (normally none: they arrive after their entry). */
  private pending: { checkpoint: AuditCheckpoint; line?: number }[] = [];

  /** `from`: verify a segment that continues a head already trusted (a previous checkpoint). */
  constructor(
    private readonly trusted: TrustedKeys,
    from?: { seq: number; hash: string },
  ) {
    if (from) {
      this.lastSeq = from.seq;
      this.lastHash = from.hash;
    }
  }

  get head(): { seq: number; hash: string } {
    return { seq: this.lastSeq, hash: this.lastHash };
  }

  get counts(): { entries: number; checkpoints: number } {
    return { entries: this.entries, checkpoints: this.checkpoints };
  }

  /** Records a problem found outside the chain itself (an export's framing). */
  report(problem: ChainBreak): void {
    this.breaks += 1;
    this.firstBreak ??= problem;
  }

  addEntry(entry: ChainEntry, line?: number): void {
    this.entries += 1;
    const expectedSeq = this.lastSeq + 1;
    if (entry.seq <= this.lastSeq) {
      this.report({
        seq: entry.seq,
        reason: 'out-of-order',
        expected: expectedSeq,
        actual: entry.seq,
        detail: `entry ${entry.seq} comes after entry ${this.lastSeq}`,
        line,
      });
      return; // the chain goes on from the entry before
    }
    if (entry.seq > expectedSeq) {
      this.report({
        seq: expectedSeq,
        reason: 'gap',
        expected: expectedSeq,
        actual: entry.seq,
        detail: expectedSeq === entry.seq - 1 ? `entry ${expectedSeq} is missing` : `entries ${expectedSeq}..${entry.seq - 1} are missing`,
        line,
      });
    } else if (entry.prevHash !== this.lastHash) {
      this.report({
        seq: entry.seq,
        reason: 'link-mismatch',
        expected: this.lastHash,
        actual: entry.prevHash,
        detail: `entry ${entry.seq} does not link to entry ${this.lastSeq}: an entry was removed, replaced or moved`,
        line,
      });
    } else {
      const computed = chainEntryHash(entry.prevHash, entry);
      if (computed !== entry.hash) {
        this.report({
          seq: entry.seq,
          reason: 'hash-mismatch',
          expected: computed,
          actual: entry.hash,
          detail: `entry ${entry.seq} was changed after it was written`,
          line,
        });
      }
    }
    this.lastSeq = entry.seq;
    this.lastHash = entry.hash;
    this.resolvePending();
  }

  addCheckpoint(checkpoint: AuditCheckpoint, line?: number): void {
    this.checkpoints += 1;
    const signature = checkCheckpointSignature(checkpoint, this.trusted);
    if (signature !== 'ok') {
      this.report({
        seq: checkpoint.seq,
        reason: 'checkpoint-signature',
        expected: `a valid signature by a trusted key`,
        actual: `${signature} (key ${checkpoint.keyId})`,
        detail:
          signature === 'unknown-key'
            ? `checkpoint at seq ${checkpoint.seq} is signed with key "${checkpoint.keyId}", which is not trusted`
            : `checkpoint at seq ${checkpoint.seq} has an invalid signature`,
        line,
      });
      return; // an unsigned claim says nothing about the chain
    }
    if (checkpoint.seq === this.lastSeq) {
      this.compare(checkpoint, line);
    } else if (checkpoint.seq > this.lastSeq) {
      this.pending.push({ checkpoint, line });
    } else {
      this.report({
        seq: checkpoint.seq,
        reason: 'out-of-order',
        expected: `a checkpoint at seq ${this.lastSeq} or later`,
        actual: checkpoint.seq,
        detail: `checkpoint at seq ${checkpoint.seq} comes after entry ${this.lastSeq}`,
        line,
      });
    }
  }

  /** The verdict; `storedHead` is where the database says the chain ends (the verify endpoint). */
  finish(storedHead?: { seq: number; hash: string }): ChainReport {
    for (const { checkpoint, line } of this.pending) {
      this.report({
        seq: checkpoint.seq,
        reason: 'checkpoint-mismatch',
        expected: checkpoint.headHash,
        actual: null,
        detail: `a signed checkpoint covers entries up to seq ${checkpoint.seq}, but the chain ends at seq ${this.lastSeq}: entries were cut off the end`,
        line,
      });
    }
    this.pending = [];
    if (storedHead && (storedHead.seq !== this.lastSeq || storedHead.hash !== this.lastHash)) {
      this.report({
        seq: storedHead.seq,
        reason: 'head-mismatch',
        expected: `${storedHead.seq}:${storedHead.hash}`,
        actual: `${this.lastSeq}:${this.lastHash}`,
        detail: `the chain head says seq ${storedHead.seq} but the entries end at seq ${this.lastSeq}`,
      });
    }
    return {
      intact: this.breaks === 0,
      entries: this.entries,
      checkpoints: this.checkpoints,
      headSeq: this.lastSeq,
      headHash: this.lastHash,
      ...(this.firstBreak ? { firstBreak: this.firstBreak } : {}),
      breaks: this.breaks,
    };
  }

  private resolvePending(): void {
    if (this.pending.length === 0) return;
    const still: typeof this.pending = [];
    for (const item of this.pending) {
      if (item.checkpoint.seq === this.lastSeq) this.compare(item.checkpoint, item.line);
      else if (item.checkpoint.seq < this.lastSeq) {
        this.report({
          seq: item.checkpoint.seq,
          reason: 'checkpoint-mismatch',
          expected: item.checkpoint.headHash,
          actual: null,
          detail: `a signed checkpoint names entry ${item.checkpoint.seq}, which is missing`,
          line: item.line,
        });
      } else still.push(item);
    }
    this.pending = still;
  }

  private compare(checkpoint: AuditCheckpoint, line?: number): void {
    if (checkpoint.headHash !== this.lastHash) {
      this.report({
        seq: checkpoint.seq,
        reason: 'checkpoint-mismatch',
        expected: checkpoint.headHash,
        actual: this.lastHash,
        detail: `the chain at seq ${checkpoint.seq} differs from what was signed at ${checkpoint.createdAt}`,
        line,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Export format (JSON Lines): a header, the entries and checkpoints in chain order, a signed trailer.
// ---------------------------------------------------------------------------------------------------------------

export interface ExportKey {
  keyId: string;
  algorithm: 'Ed25519';
  publicKeyPem: string;
}

export interface ExportHeader {
  kind: 'header';
  format: typeof EXPORT_FORMAT;
  version: typeof EXPORT_VERSION;
  exportedAt: string;
  /** The service's public keys. Trusting these proves the export is intact, not where it came from. */
  keys: ExportKey[];
  hash: 'sha256(prevHash + canonicalJson(content))';
}

export type ExportEntryLine = { kind: 'entry' } & ChainEntry;
export type ExportCheckpointLine = { kind: 'checkpoint' } & AuditCheckpoint;

export interface ExportTrailer {
  kind: 'end';
  exportedAt: string;
  lastSeq: number;
  headHash: string;
  entries: number;
  checkpoints: number;
  /**
   * Present only when the policy service's checkpoint writer was refusing to sign when the export was made
   * (the database no longer agreed with what the service had verified): the service still exports what
   * the database holds, for the investigation, but says so under its signature.
   */
  writerProblem?: CheckpointWriterProblem;
  keyId: string;
  signature: string;
}

export function exportHeader(exportedAt: string, keys: ExportKey[]): ExportHeader {
  return { kind: 'header', format: EXPORT_FORMAT, version: EXPORT_VERSION, exportedAt, keys, hash: 'sha256(prevHash + canonicalJson(content))' };
}

export function exportEntryLine(entry: ChainEntry): ExportEntryLine {
  return { kind: 'entry', ...chainEntryContent(entry), prevHash: entry.prevHash, hash: entry.hash };
}

export function exportCheckpointLine(checkpoint: AuditCheckpoint): ExportCheckpointLine {
  return {
    kind: 'checkpoint',
    seq: checkpoint.seq,
    headHash: checkpoint.headHash,
    createdAt: checkpoint.createdAt,
    keyId: checkpoint.keyId,
    signature: checkpoint.signature,
  };
}

/** The last line: signed over everything in it, so cutting the export short (or editing this line) shows. */
export function signExportTrailer(fields: Omit<ExportTrailer, 'kind' | 'keyId' | 'signature'>, key: SigningKey): ExportTrailer {
  const unsigned = { kind: 'end' as const, ...fields, keyId: key.keyId };
  return { ...unsigned, signature: signDetached(key.privateKey, signedBytesOf(unsigned)) };
}

/** An entry or a checkpoint, as the chain is read back: each checkpoint right after the entry at its seq. */
export type ChainItem = { kind: 'entry'; entry: ChainEntry } | { kind: 'checkpoint'; checkpoint: AuditCheckpoint };

/** The JSON Lines export of a chain, line by line (each ends with a newline): header, items, signed trailer. */
export async function* exportJsonLines(
  items: AsyncIterable<ChainItem> | Iterable<ChainItem>,
  options: { exportedAt: string; keys: ExportKey[]; signing: SigningKey; writerProblem?: CheckpointWriterProblem | null },
): AsyncGenerator<string> {
  yield `${JSON.stringify(exportHeader(options.exportedAt, options.keys))}\n`;
  let entries = 0;
  let checkpoints = 0;
  let lastSeq = 0;
  let headHash = GENESIS_HASH;
  for await (const item of items) {
    if (item.kind === 'entry') {
      entries += 1;
      lastSeq = item.entry.seq;
      headHash = item.entry.hash;
      yield `${JSON.stringify(exportEntryLine(item.entry))}\n`;
    } else {
      checkpoints += 1;
      yield `${JSON.stringify(exportCheckpointLine(item.checkpoint))}\n`;
    }
  }
  const trailer = signExportTrailer(
    {
      exportedAt: options.exportedAt,
      lastSeq,
      headHash,
      entries,
      checkpoints,
      ...(options.writerProblem ? { writerProblem: options.writerProblem } : {}),
    },
    options.signing,
  );
  yield `${JSON.stringify(trailer)}\n`;
}

export interface ExportReport extends ChainReport {
  header: { exportedAt: string; keys: ExportKey[] } | null;
  trailer: boolean;
  /** When checked against a previous export: whether this export extends it (see `checkExportConsistency`). */
  consistency?: ConsistencyReport;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const isNullableString = (value: unknown) => value === null || value === undefined || typeof value === 'string';
const isSeq = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) > 0;
const isHash = (value: unknown): value is string => typeof value === 'string' && HASH_PATTERN.test(value);

function entryProblem(line: Json): string | null {
  if (!isSeq(line.seq)) return 'seq must be a positive integer';
  if (typeof line.occurredAt !== 'string') return 'occurredAt must be a string';
  if (typeof line.actor !== 'string' || typeof line.action !== 'string') return 'actor and action must be strings';
  for (const field of ['groupId', 'systemId', 'commandId', 'reason', 'incidentRef', 'sourceAddress']) {
    if (!isNullableString(line[field])) return `${field} must be a string or null`;
  }
  if (!isObject(line.details)) return 'details must be an object';
  if (!isHash(line.prevHash) || !isHash(line.hash)) return 'prevHash and hash must be 64 hex digits';
  return null;
}

function checkpointProblem(line: Json): string | null {
  if (!isSeq(line.seq)) return 'seq must be a positive integer';
  if (!isHash(line.headHash)) return 'headHash must be 64 hex digits';
  if (typeof line.createdAt !== 'string' || typeof line.keyId !== 'string' || typeof line.signature !== 'string') {
    return 'createdAt, keyId and signature must be strings';
  }
  return null;
}

/** A well-formed entry or checkpoint line of an export, with its line number (1-based). */
export type ExportItem = ChainItem & { line: number };

/**
 * Verifies an export line by line (constant memory): the header, every entry's hash and link, every
 * checkpoint's signature and head hash, and the signed trailer (whose absence means the export was cut).
 * `trusted` decides which keys may sign; by default the keys the export's own header lists, which proves
 * integrity only — anyone able to rewrite the export can also replace the key in it.
 */
export class ExportVerifier {
  private verifier: ChainVerifier | null = null;
  private headerSeen: ExportReport['header'] = null;
  private trailerSeen: ExportTrailer | null = null;
  private trust: TrustedKeys | undefined;
  private lineNumber = 0;
  private fatal: ChainBreak | null = null;

  constructor(trusted?: TrustedKeys) {
    this.trust = trusted;
  }

  /** The signed trailer, once read (whether or not it verified). */
  get trailer(): ExportTrailer | null {
    return this.trailerSeen;
  }

  /** Takes the next line; returns the entry or checkpoint on it when it is well-formed (null otherwise). */
  add(raw: string): ExportItem | null {
    if (this.fatal) return null;
    this.lineNumber += 1;
    const lineNumber = this.lineNumber;
    const text = raw.trim();
    if (text === '') return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!this.verifier) {
      if (!isObject(parsed) || parsed.kind !== 'header' || parsed.format !== EXPORT_FORMAT) {
        this.fatal = this.malformed(`line ${lineNumber} is not a ${EXPORT_FORMAT} header`);
        return null;
      }
      if (parsed.version !== EXPORT_VERSION) {
        this.fatal = this.malformed(`export format version ${String(parsed.version)} is not supported (expected ${EXPORT_VERSION})`);
        return null;
      }
      const keys = Array.isArray(parsed.keys) ? (parsed.keys as ExportKey[]) : [];
      this.headerSeen = { exportedAt: String(parsed.exportedAt), keys };
      if (!this.trust) {
        const byId = new Map<string, KeyObject>();
        for (const key of keys) {
          try {
            // Text from the export: parsed as text only, never read as a file path.
            byId.set(String(key.keyId), parsePublicKeyText(String(key.publicKeyPem)));
          } catch {
            // an unusable key: signatures naming it will not verify
          }
        }
        this.trust = trustKeysById(byId);
      }
      this.verifier = new ChainVerifier(this.trust);
      return null;
    }
    const verifier = this.verifier;
    if (this.trailerSeen) {
      verifier.report(this.malformed(`line ${lineNumber} follows the trailer`));
      return null;
    }
    if (!isObject(parsed)) {
      verifier.report(this.malformed(`line ${lineNumber} is not a JSON object`));
      return null;
    }
    if (parsed.kind === 'entry') {
      const problem = entryProblem(parsed);
      if (problem) {
        verifier.report(this.malformed(`entry on line ${lineNumber}: ${problem}`, isSeq(parsed.seq) ? parsed.seq : null));
        return null;
      }
      const { kind: _kind, ...entry } = parsed;
      verifier.addEntry(entry as unknown as ChainEntry, lineNumber);
      return { kind: 'entry', entry: entry as unknown as ChainEntry, line: lineNumber };
    }
    if (parsed.kind === 'checkpoint') {
      const problem = checkpointProblem(parsed);
      if (problem) {
        verifier.report(this.malformed(`checkpoint on line ${lineNumber}: ${problem}`, isSeq(parsed.seq) ? parsed.seq : null));
        return null;
      }
      const { kind: _kind, ...checkpoint } = parsed;
      verifier.addCheckpoint(checkpoint as unknown as AuditCheckpoint, lineNumber);
      return { kind: 'checkpoint', checkpoint: checkpoint as unknown as AuditCheckpoint, line: lineNumber };
    }
    if (parsed.kind === 'end') {
      this.trailerSeen = parsed as unknown as ExportTrailer;
      checkTrailer(verifier, this.trailerSeen, this.headerSeen, this.trust!, lineNumber);
      return null;
    }
    verifier.report(this.malformed(`line ${lineNumber} has an unknown kind "${String(parsed.kind)}"`));
    return null;
  }

  finish(): ExportReport {
    if (!this.verifier) {
      const fatal = this.fatal ?? this.malformed('the export is empty: no header');
      return {
        intact: false,
        entries: 0,
        checkpoints: 0,
        headSeq: 0,
        headHash: GENESIS_HASH,
        firstBreak: fatal,
        breaks: 1,
        header: this.headerSeen,
        trailer: false,
      };
    }
    if (!this.trailerSeen) {
      this.verifier.report({
        seq: this.verifier.head.seq,
        reason: 'truncated',
        expected: 'a signed trailer line ({"kind":"end",...})',
        actual: null,
        detail: `the export ends after line ${this.lineNumber} without its trailer: it was cut short`,
        line: this.lineNumber,
      });
    }
    return { ...this.verifier.finish(), header: this.headerSeen, trailer: this.trailerSeen !== null };
  }

  private malformed(detail: string, seq: number | null = null): ChainBreak {
    return { seq, reason: 'malformed', expected: null, actual: null, detail, line: this.lineNumber };
  }
}

/**
 * Verifies an export (see `ExportVerifier`). With `options.previous` (an earlier export of the same trail,
 * kept elsewhere), also checks in the same pass that this export extends it (`consistency`).
 */
export async function verifyAuditExport(
  lines: AsyncIterable<string> | Iterable<string>,
  trusted?: TrustedKeys,
  options: { previous?: AsyncIterable<string> | Iterable<string> } = {},
): Promise<ExportReport> {
  const verifier = new ExportVerifier(trusted);
  const consistency = options.previous ? new ExportConsistency(options.previous, trusted) : null;
  for await (const raw of lines) {
    const item = verifier.add(raw);
    if (item && consistency) await consistency.add(item);
  }
  const report = verifier.finish();
  return consistency ? { ...report, consistency: await consistency.finish() } : report;
}

function checkTrailer(
  verifier: ChainVerifier,
  trailer: ExportTrailer,
  header: ExportReport['header'],
  trusted: TrustedKeys,
  line: number,
): void {
  const signature =
    typeof trailer.keyId === 'string' && typeof trailer.signature === 'string'
      ? signatureCheck(trusted, trailer.keyId, signedBytesOf(trailer as unknown as Record<string, unknown>), trailer.signature)
      : 'bad-signature';
  if (signature !== 'ok') {
    verifier.report({
      seq: null,
      reason: 'trailer-signature',
      expected: 'a valid signature by a trusted key',
      actual: `${signature} (key ${String(trailer.keyId)})`,
      detail: 'the trailer is not signed by a trusted key',
      line,
    });
    return;
  }
  const { entries, checkpoints } = verifier.counts;
  const head = verifier.head;
  const mismatches: [string, unknown, unknown][] = [
    ['exportedAt', header?.exportedAt, trailer.exportedAt],
    ['lastSeq', head.seq, trailer.lastSeq],
    ['headHash', head.hash, trailer.headHash],
    ['entries', entries, trailer.entries],
    ['checkpoints', checkpoints, trailer.checkpoints],
  ];
  for (const [field, seen, claimed] of mismatches) {
    if (seen !== claimed) {
      verifier.report({
        seq: field === 'lastSeq' || field === 'headHash' ? head.seq : null,
        reason: 'trailer-mismatch',
        expected: claimed as string | number,
        actual: seen as string | number,
        detail: `the signed trailer says ${field} = ${String(claimed)}, the export has ${String(seen)}`,
        line,
      });
      return;
    }
  }
  if (trailer.writerProblem !== undefined) {
    const problem: Json = isObject(trailer.writerProblem) ? (trailer.writerProblem as unknown as Json) : {};
    verifier.report({
      seq: typeof problem.seq === 'number' ? problem.seq : null,
      reason: 'checkpoint-writer',
      expected: null,
      actual: typeof problem.reason === 'string' ? problem.reason : null,
      detail:
        `the policy service refused to sign checkpoints when it made this export` +
        `${typeof problem.detectedAt === 'string' ? ` (since ${problem.detectedAt})` : ''}: ` +
        `${typeof problem.detail === 'string' ? problem.detail : 'no detail'}`,
      line,
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Consistency between exports: does a new export extend an earlier one?
// ---------------------------------------------------------------------------------------------------------------

export interface ConsistencyReport {
  /** The previous export verifies, and this one contains all of it unchanged: its head is on this chain. */
  consistent: boolean;
  /** The previous export's own verification (with the same trusted keys). */
  previous: ExportReport;
  /** The head the previous export's signed trailer names (null when it has none). */
  previousHead: { seq: number; hash: string } | null;
  /** Whether this export has the previous head's entry, with the same hash. */
  headOnChain: boolean;
  /** Entries and checkpoints of the previous export found unchanged here. */
  entriesMatched: number;
  checkpointsMatched: number;
  /** Entries and checkpoints of the previous export that differ here, or are missing. */
  entriesChanged: number;
  entriesMissing: number;
  checkpointsChanged: number;
  checkpointsMissing: number;
  problems: number;
  /** The first difference, in chain order (`line`: in this export, `previousLine`: in the previous one). */
  firstProblem?: ChainBreak;
}

const CONTENT_FIELDS: (keyof ChainEntryContent)[] = [
  'seq',
  'occurredAt',
  'actor',
  'action',
  'groupId',
  'systemId',
  'commandId',
  'reason',
  'incidentRef',
  'sourceAddress',
  'details',
];

/** Chain order: by seq, each entry before the checkpoints at its seq. */
function itemOrder(a: ChainItem, b: ChainItem): number {
  const seqA = a.kind === 'entry' ? a.entry.seq : a.checkpoint.seq;
  const seqB = b.kind === 'entry' ? b.entry.seq : b.checkpoint.seq;
  if (seqA !== seqB) return seqA - seqB;
  return (a.kind === 'entry' ? 0 : 1) - (b.kind === 'entry' ? 0 : 1);
}

function changedEntryFields(before: ChainEntry, after: ChainEntry): string[] {
  const a = chainEntryContent(before);
  const b = chainEntryContent(after);
  const changed: string[] = CONTENT_FIELDS.filter((field) => canonicalJson(a[field]) !== canonicalJson(b[field]));
  if (before.prevHash !== after.prevHash) changed.push('prevHash');
  if (before.hash !== after.hash) changed.push('hash');
  return changed;
}

function changedCheckpointFields(before: AuditCheckpoint, after: AuditCheckpoint): string[] {
  return (['seq', 'headHash', 'createdAt', 'keyId', 'signature'] as const).filter((field) => before[field] !== after[field]);
}

function lineIterator(lines: AsyncIterable<string> | Iterable<string>): AsyncIterator<string> {
  if (Symbol.asyncIterator in lines) return (lines as AsyncIterable<string>)[Symbol.asyncIterator]();
  const iterator = (lines as Iterable<string>)[Symbol.iterator]();
  return { next: async () => iterator.next() };
}

/**
 * Checks that an export extends a previous one — the audit trail's consistency proof: every entry and
 * checkpoint of the previous export is in this one, unchanged (same seq, same content and hashes), so the
 * previous export's signed head is on this chain. Rewriting any history the previous export covered shows
 * here at the first entry that changed, even when the database was made self-consistent again (entries
 * re-hashed, the head moved, later checkpoints deleted) and the new export verifies on its own.
 *
 * Streams both exports side by side in chain order (constant memory): feed this export's items in order
 * with `add` (as `ExportVerifier.add` returns them); the previous export is read as needed, and verified
 * on the way (its report is `previous`).
 */
export class ExportConsistency {
  private readonly previousVerifier: ExportVerifier;
  private readonly source: AsyncIterator<string>;
  private peeked: ExportItem | null = null;
  private exhausted = false;
  /** The last entry of the previous export, and this export's hash at its seq (null: not here). */
  private lastPrevious: { seq: number; hash: string; currentHash: string | null } | null = null;
  private currentEnd = 0;
  private report = {
    entriesMatched: 0,
    checkpointsMatched: 0,
    entriesChanged: 0,
    entriesMissing: 0,
    checkpointsChanged: 0,
    checkpointsMissing: 0,
    problems: 0,
  };
  private firstProblem?: ChainBreak;

  constructor(previous: AsyncIterable<string> | Iterable<string>, trusted?: TrustedKeys) {
    this.previousVerifier = new ExportVerifier(trusted);
    this.source = lineIterator(previous);
  }

  /** The next item of this export, in chain order. */
  async add(item: ExportItem): Promise<void> {
    if (item.kind === 'entry') this.currentEnd = Math.max(this.currentEnd, item.entry.seq);
    for (;;) {
      const previous = await this.peek();
      if (!previous) return; // past the previous export's end: whatever follows extends it
      const order = itemOrder(previous, item);
      if (order > 0) return; // new here (a later checkpoint at an old seq, say): allowed
      this.peeked = null;
      if (order < 0) {
        this.missing(previous, false);
        continue;
      }
      this.compare(previous, item);
      return;
    }
  }

  async finish(): Promise<ConsistencyReport> {
    for (let previous = await this.peek(); previous; previous = await this.peek()) {
      this.peeked = null;
      this.missing(previous, true);
    }
    const previous = this.previousVerifier.finish();
    const trailer = this.previousVerifier.trailer;
    const previousHead =
      trailer && typeof trailer.lastSeq === 'number' && typeof trailer.headHash === 'string'
        ? { seq: trailer.lastSeq, hash: trailer.headHash }
        : null;
    let headOnChain = false;
    if (previousHead) {
      headOnChain =
        previousHead.seq === 0
          ? previousHead.hash === GENESIS_HASH
          : this.lastPrevious !== null &&
            this.lastPrevious.seq === previousHead.seq &&
            this.lastPrevious.hash === previousHead.hash &&
            this.lastPrevious.currentHash === previousHead.hash;
    }
    if (!headOnChain && this.report.problems === 0) {
      this.problem({
        seq: previousHead?.seq ?? null,
        reason: 'entry-changed',
        expected: previousHead ? `${previousHead.seq}:${previousHead.hash}` : 'a previous export with its signed trailer',
        actual: null,
        detail: previousHead
          ? `the previous export's head (seq ${previousHead.seq}) is not on this chain`
          : 'the previous export has no trailer: its head is unknown',
      });
    }
    return {
      consistent: previous.intact && headOnChain && this.report.problems === 0,
      previous,
      previousHead,
      headOnChain,
      ...this.report,
      ...(this.firstProblem ? { firstProblem: this.firstProblem } : {}),
    };
  }

  private async peek(): Promise<ExportItem | null> {
    while (!this.peeked && !this.exhausted) {
      const next = await this.source.next();
      if (next.done) {
        this.exhausted = true;
        break;
      }
      this.peeked = this.previousVerifier.add(next.value);
    }
    return this.peeked;
  }

  private compare(previous: ExportItem, current: ExportItem): void {
    if (previous.kind === 'entry' && current.kind === 'entry') {
      const changed = changedEntryFields(previous.entry, current.entry);
      this.lastPrevious = { seq: previous.entry.seq, hash: previous.entry.hash, currentHash: current.entry.hash };
      if (changed.length === 0) {
        this.report.entriesMatched += 1;
        return;
      }
      this.report.entriesChanged += 1;
      this.problem({
        seq: previous.entry.seq,
        reason: 'entry-changed',
        expected: previous.entry.hash,
        actual: current.entry.hash,
        detail:
          `entry ${previous.entry.seq} differs from the previous export (${changed.join(', ')}): ` +
          `the history the previous export recorded was rewritten`,
        line: current.line,
        previousLine: previous.line,
      });
    } else if (previous.kind === 'checkpoint' && current.kind === 'checkpoint') {
      const changed = changedCheckpointFields(previous.checkpoint, current.checkpoint);
      if (changed.length === 0) {
        this.report.checkpointsMatched += 1;
        return;
      }
      this.report.checkpointsChanged += 1;
      this.problem({
        seq: previous.checkpoint.seq,
        reason: 'checkpoint-changed',
        expected: previous.checkpoint.headHash,
        actual: current.checkpoint.headHash,
        detail: `the checkpoint at seq ${previous.checkpoint.seq} differs from the previous export (${changed.join(', ')})`,
        line: current.line,
        previousLine: previous.line,
      });
    }
  }

  private missing(previous: ExportItem, pastEnd: boolean): void {
    const where = pastEnd ? ` (this export ends at seq ${this.currentEnd})` : '';
    if (previous.kind === 'entry') {
      this.lastPrevious = { seq: previous.entry.seq, hash: previous.entry.hash, currentHash: null };
      this.report.entriesMissing += 1;
      this.problem({
        seq: previous.entry.seq,
        reason: 'entry-missing',
        expected: previous.entry.hash,
        actual: null,
        detail: `entry ${previous.entry.seq} of the previous export is not in this one${where}: entries were deleted or cut off`,
        previousLine: previous.line,
      });
    } else {
      this.report.checkpointsMissing += 1;
      this.problem({
        seq: previous.checkpoint.seq,
        reason: 'checkpoint-missing',
        expected: previous.checkpoint.headHash,
        actual: null,
        detail:
          `the checkpoint at seq ${previous.checkpoint.seq} (signed ${previous.checkpoint.createdAt}) in the previous export ` +
          `is not in this one${where}: checkpoints were deleted`,
        previousLine: previous.line,
      });
    }
  }

  private problem(problem: ChainBreak): void {
    this.report.problems += 1;
    this.firstProblem ??= problem;
  }
}

/**
 * Whether `current` extends `previous` (two JSON Lines exports of the same audit trail; see
 * `ExportConsistency`). Verifies the previous export on the way; `current` is only compared — verify it
 * with `verifyAuditExport`, or use that with `options.previous` to do both in one pass.
 */
export async function checkExportConsistency(
  previous: AsyncIterable<string> | Iterable<string>,
  current: AsyncIterable<string> | Iterable<string>,
  trusted?: TrustedKeys,
): Promise<ConsistencyReport> {
  return (await verifyAuditExport(current, trusted, { previous })).consistency!;
}
