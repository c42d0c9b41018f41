import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { z } from 'zod';
import { describeError } from '../logging/describe-error';
import { AdapterStateError } from './adapter-state.error';
import type { AdapterStateStore } from './adapter-state.store';
import { FileAdapterStateStore } from './file-adapter-state.store';
import { SystemStateRecordSchema, type SystemStateRecord } from './system-state';

const SNAPSHOT = 'state.snapshot.json';
const LOCK = 'state.lock';
const TMP_SUFFIX = '.tmp';
const LOG_PATTERN = /^state\.([0-9]+)\.log$/;
const NEWLINE = 0x0a;

const SnapshotSchema = z.object({
  format: z.literal(1),
  /** The sequence number of the log that continues this snapshot. */
  log: z.number().int().positive(),
  records: z.array(z.unknown()),
});

export interface LogStructuredStateStoreOptions {
  /** The log is compacted once it exceeds max(compactMinBytes, compactFactor × snapshot size). Default 4 MiB. */
  compactMinBytes?: number;
  /** Default 4. */
  compactFactor?: number;
  /** How often the store renews (and checks) its lease on the directory in `state.lock`. Default 1 s. */
  leaseRenewMs?: number;
  /** A lease not renewed for this long is stale and may be taken over. Default 6 s; must exceed `leaseRenewMs`. */
  leaseStaleMs?: number;
}

/** The content of `state.lock`. */
const LeaseSchema = z.object({
  token: z.string().min(1),
  pid: z.number().int(),
  hostname: z.string(),
  acquiredAt: z.string(),
  renewedAt: z.string(),
});
type Lease = z.infer<typeof LeaseSchema>;

/** What `state.lock` holds: a lease, or (written by an older adapter version, or damaged) something else. */
interface LockFileContent {
  lease?: Lease;
  /** The lease's last renewal (epoch ms); for a file that holds no lease, its modification time. */
  renewedAt: number;
  text: string;
}

/** Directories held open by a store of this process: a second store on one of them is refused at once. */
const openDirectories = new Set<string>();

interface PendingSave {
  systemId: string;
  line: string;
  resolve: () => void;
  reject: (error: Error) => void;
}

type Phase = 'new' | 'opening' | 'open' | 'closing' | 'closed';

/**
 * The adapter's state in one snapshot and one append-only log, written with group commit, so that a
 * burst of saves (about three per decision, for every system of the adapter) costs one `write` and one
 * `fdatasync` instead of a temporary file, two fsyncs and a rename per save.
 *
 * Files in the state directory (one adapter per directory, guarded by `state.lock`):
 * - `state.snapshot.json`: `{"format":1,"log":n,"records":[...]}`, every record at the time it was
 *   written, and the number of the log that continues it. Replaced atomically (temporary file, fsync,
 *   rename, fsync of the directory); it always exists once the store has been opened.
 * - `state.<n>.log`: JSON lines, one whole `SystemStateRecord` per line; the last line of a system wins.
 *
 * Saving: the record is serialized once and queued. A flush starts on the next turn of the event loop
 * (`setImmediate`, so every save made in the same turn joins it), writes all queued lines with ONE
 * `write` to the log (opened once, in append mode) and ONE `datasync()`, and then resolves every save
 * in it. Saves made while a flush runs form the next flush: the slower the disk, the larger the groups.
 * A save resolves only after the datasync that covers its line.
 *
 * Reading: after `open()` everything is in memory (system id → serialized line); `load` parses the line,
 * so every caller gets its own copy and nothing a caller does to its objects reaches the store. The map
 * holds durable records only: it is updated after the datasync of the flush.
 *
 * A failed flush rejects every save in it, and the log is truncated back to its last durable size (and
 * that truncation synced) so that a half-written line never sits in the middle of the log and no later
 * flush makes the failed lines count. If even that fails, the store is failed: every later save rejects
 * with `AdapterStateError` (which `failure()` returns, so that the adapter reports itself unhealthy),
 * and a restart reads the truth back from disk.
 *
 * Compaction: after a flush that leaves the log larger than max(4 MiB, 4 × the last snapshot), with no
 * flush running, the store writes snapshot n+1 (the whole map) atomically, then creates
 * `state.<n+1>.log`, deletes `state.<n>.log` and syncs the directory. Saves made meanwhile wait for the
 * next flush, which goes to the new log. A crash at any point leaves a loadable state: before the rename
 * the old snapshot and its log are intact; after it, the new snapshot holds everything in the old log,
 * which `open` deletes as outdated (a missing new log is empty). If the snapshot cannot be written the
 * old log simply goes on (and compaction waits until the log has grown by the threshold again); a
 * failure after the rename fails the store, since the old log is outdated from then on.
 *
 * Opening: takes the lock, deletes leftover temporary files, reads the snapshot, deletes older logs and
 * replays the current one. Only lines that end in `\n` count: whatever follows the last newline is the
 * torn end of a write that was never acknowledged (its datasync never returned), and is cut off. Any
 * other damage — an unreadable snapshot, a line that is not JSON or not a valid record, a log newer than
 * the snapshot, a log without a snapshot — stops the adapter with an `AdapterStateError` naming the
 * file (and line), rather than forgetting a decision: a lost revoke could give access back.
 *
 * Migration: a directory written by `FileAdapterStateStore` (`<systemId>.json` files, no snapshot, no
 * log) is imported on `open`: every file is validated by `FileAdapterStateStore.load`, all of them
 * become the first snapshot (durably), and then the files are deleted. If a crash interrupted that
 * deletion, files that equal their snapshot record are deleted on the next open; a file that differs
 * (an old adapter version ran on the directory since) stops the adapter.
 *
 * Lock: `state.lock` holds a lease, `{"token","pid","hostname","acquiredAt","renewedAt"}` (the token is
 * random, one per store). The holder renews it every `leaseRenewMs` (default 1 s: rewritten through a
 * temporary file and a rename), and a lease is stale only once it has not been renewed for
 * `leaseStaleMs` (default 6 s) — whatever its pid or host says: containers are all PID 1, and no pid
 * check sees into another PID namespace or host. `open` creates the file exclusively; a fresh lease
 * stops the adapter with an `AdapterStateError` that names its holder and says when it turns stale; a
 * stale one is taken over (our lease written over it by rename), and read back after a short delay, so
 * that of two instances taking it over at once, the one whose write was overwritten gives up. A file
 * that holds no lease (an older version's pid lock) counts as renewed at its modification time. `open`
 * does not refuse a fresh lease at once: it watches it, and refuses only if the holder renews it; a lease
 * nobody renews is taken over once stale. So an adapter that crashed restarts on its directory after at
 * most `leaseStaleMs` (6 s by default), whatever host or PID namespace it ran in; one that stopped
 * normally released the lease. A store that failed stops renewing, so a replacement can take over.
 *
 * Each renewal first checks that the file still holds our token. If it does not (another instance took
 * the lease over, or the file was deleted), or if renewing has failed until the lease is about to turn
 * stale, the store is failed (see `failure()`): it never writes again. A flush that finds the lease
 * about to turn stale (the process was paused, say) renews it before it writes. Clocks of hosts sharing
 * a directory must agree to well within `leaseStaleMs - leaseRenewMs`. This excludes a second adapter
 * on the directory, not every overlap: an instance paused for longer than `leaseStaleMs` between its
 * check and its write may still write once before it notices (there is no fencing on the files).
 *
 * Within one process an in-memory set of open directories refuses a second store at once. `close()`
 * finishes the flushes in flight, stops renewing and deletes `state.lock` if it still holds our token,
 * so a store opened after it (in this process or another) takes the directory at once.
 *
 * Files are created with mode 0600, the directory with 0700.
 */
export class LogStructuredStateStore implements AdapterStateStore {
  private readonly compactMinBytes: number;
  private readonly compactFactor: number;
  private readonly leaseRenewMs: number;
  private readonly leaseStaleMs: number;
  private phase: Phase = 'new';
  /** Why the store refuses to save any more, once it does. */
  private failedWith?: AdapterStateError;
  private lockKey?: string;
  /** Our lease while we hold it (or believe we do). */
  private lease?: Lease;
  /** When our lease was last written (epoch ms). */
  private leaseRenewedAt = 0;
  private renewTimer?: NodeJS.Timeout;
  private renewing?: Promise<void>;
  private readonly records = new Map<string, string>();
  private logNumber = 0;
  private log?: fs.FileHandle;
  /** Bytes of the log that are durable (every flush so far). */
  private logSize = 0;
  private snapshotSize = 0;
  /** No compaction before the log is this large (moved on after a failed compaction). */
  private compactNotBefore = 0;
  private queue: PendingSave[] = [];
  private flushing?: Promise<void>;
  private opening?: Promise<void>;
  private closing?: Promise<void>;

  constructor(
    private readonly directory: string,
    options: LogStructuredStateStoreOptions = {},
  ) {
    this.compactMinBytes = options.compactMinBytes ?? 4 * 1024 * 1024;
    this.compactFactor = options.compactFactor ?? 4;
    this.leaseRenewMs = options.leaseRenewMs ?? 1_000;
    this.leaseStaleMs = options.leaseStaleMs ?? 6_000;
    if (!(this.leaseRenewMs > 0 && this.leaseStaleMs > this.leaseRenewMs)) {
      throw new AdapterStateError(`leaseStaleMs (${this.leaseStaleMs}) must exceed leaseRenewMs (${this.leaseRenewMs}), which must be positive`);
    }
  }

  /**
   * Why the store refuses every save, once it does: a failed write it could not roll back, a failure
   * after the compaction's point of no return, or the lease on its directory lost to another instance.
   * Only a restart helps (it reads the truth back from disk); until then the adapter must report itself
   * unhealthy.
   */
  failure(): AdapterStateError | undefined {
    return this.failedWith;
  }

  open(): Promise<void> {
    if (this.phase !== 'new') return Promise.reject(new AdapterStateError(`state store ${this.directory} was opened before`));
    this.phase = 'opening';
    this.opening = this.openOnce().then(
      () => {
        this.phase = 'open';
      },
      (error: unknown) => {
        this.phase = 'closed';
        throw error;
      },
    );
    return this.opening;
  }

  private async openOnce(): Promise<void> {
    await fs.mkdir(this.directory, { recursive: true, mode: 0o700 });
    await this.acquireLock();
    try {
      await this.recover();
      if (this.failedWith) throw this.failedWith; // the lease was lost while recovering
    } catch (error) {
      await this.log?.close().catch(() => undefined);
      this.log = undefined;
      await this.releaseLock();
      throw error;
    }
  }

  async load(systemId: string): Promise<SystemStateRecord | undefined> {
    if (this.phase !== 'open' && this.phase !== 'closing') throw new AdapterStateError(`state store ${this.directory} is not open`);
    const line = this.records.get(systemId);
    return line === undefined ? undefined : (JSON.parse(line) as SystemStateRecord);
  }

  save(record: SystemStateRecord): Promise<void> {
    if (this.phase !== 'open') return Promise.reject(new AdapterStateError(`state store ${this.directory} is ${this.phase === 'closing' ? 'closing' : 'not open'}`));
    if (this.failedWith) return Promise.reject(this.failedWith);
    // The one check that matters for the file: a record of a bad system id would make the log unreadable.
    if (typeof record.systemId !== 'string' || !SLUG_PATTERN.test(record.systemId)) {
      return Promise.reject(new AdapterStateError(`refused to store a record with system id ${JSON.stringify(record.systemId)}`));
    }
    let line: string;
    try {
      line = JSON.stringify(record); // once, now: later changes to the caller's object do not reach the store
    } catch (error) {
      return Promise.reject(new AdapterStateError(`cannot serialize the record of system "${record.systemId}": ${describeError(error)}`));
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ systemId: record.systemId, line, resolve, reject });
      this.startFlushing();
    });
  }

  /** Waits for the saves already made (new ones are refused), then releases the log and the lease. Idempotent. */
  close(): Promise<void> {
    if (this.phase === 'new') this.phase = 'closed';
    if (this.phase === 'open') this.phase = 'closing'; // at once: no save from now on
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await this.opening?.catch(() => undefined);
    if (this.phase === 'closed') return; // never opened, or opening failed
    this.phase = 'closing';
    while (this.flushing) await this.flushing;
    try {
      await this.log?.close();
    } finally {
      this.log = undefined;
      await this.releaseLock();
      this.phase = 'closed';
    }
  }

  // ---- group commit ----------------------------------------------------------------------------------

  private startFlushing(): void {
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.drain())
      .finally(() => {
        this.flushing = undefined;
        this.startFlushing(); // saves queued after the last look at the queue
      });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.flush(batch);
        if (!this.failedWith && this.logSize > this.compactionThreshold()) await this.compact();
      } catch (error) {
        // Not expected (flush and compact handle their errors); never leave a save hanging.
        this.failedWith ??= new AdapterStateError(`state store ${this.directory} failed: ${describeError(error)}`, { cause: error });
        for (const save of batch) save.reject(this.failedWith);
      }
    }
  }

  private async flush(batch: PendingSave[]): Promise<void> {
    // After a pause (a stopped process, a starved event loop) the lease may be taken over before the
    // renewal timer gets its turn: make sure it is still ours before writing.
    if (!this.failedWith && Date.now() - this.leaseRenewedAt >= this.leaseStaleMs - this.leaseRenewMs) await this.renewLease();
    if (this.failedWith) {
      for (const save of batch) save.reject(this.failedWith);
      return;
    }
    const log = this.log!;
    const bytes = Buffer.from(`${batch.map((save) => save.line).join('\n')}\n`, 'utf8');
    try {
      await writeFully(log, bytes);
      await log.datasync();
    } catch (error) {
      const failed = new AdapterStateError(`could not store ${batch.length} record(s) in ${this.logPath()}: ${describeError(error)}`, { cause: error });
      await this.rollBack(log, error);
      for (const save of batch) save.reject(failed);
      return;
    }
    this.logSize += bytes.length;
    for (const save of batch) this.records.set(save.systemId, save.line);
    for (const save of batch) save.resolve();
  }

  /** Cuts the log back to its durable size after a failed flush, or fails the store if that fails too. */
  private async rollBack(log: fs.FileHandle, cause: unknown): Promise<void> {
    try {
      await log.truncate(this.logSize);
      await log.datasync();
    } catch (error) {
      this.failedWith ??= new AdapterStateError(
        `state log ${this.logPath()} could not be cut back to ${this.logSize} bytes after a failed write (${describeError(cause)}): ${describeError(error)}; restart the adapter`,
        { cause: error },
      );
    }
  }

  // ---- compaction ------------------------------------------------------------------------------------

  private compactionThreshold(): number {
    return Math.max(this.compactMinBytes, this.compactFactor * this.snapshotSize, this.compactNotBefore);
  }

  private async compact(): Promise<void> {
    const next = this.logNumber + 1;
    let snapshotSize: number;
    try {
      snapshotSize = await this.writeSnapshot(next, this.records.values());
    } catch {
      // The old snapshot and log are intact and go on; try again once the log has grown some more.
      this.compactNotBefore = this.logSize + Math.max(this.compactMinBytes, this.compactFactor * this.snapshotSize);
      return;
    }
    // Point of no return: the new snapshot is durable, the old log outdated.
    const old = this.log!;
    const oldPath = this.logPath();
    this.log = undefined;
    try {
      await old.close();
      this.logNumber = next;
      this.logSize = 0;
      this.snapshotSize = snapshotSize;
      this.compactNotBefore = 0;
      this.log = await fs.open(this.logPath(), 'a', 0o600);
      await fs.rm(oldPath, { force: true });
      await this.syncDirectory();
    } catch (error) {
      this.failedWith ??= new AdapterStateError(
        `state directory ${this.directory}: could not switch to log ${this.logPath()} after writing a snapshot: ${describeError(error)}; restart the adapter`,
        { cause: error },
      );
    }
  }

  /** Writes the snapshot atomically and durably; returns its size. */
  private async writeSnapshot(logNumber: number, lines: Iterable<string>): Promise<number> {
    const text = `{"format":1,"log":${logNumber},"records":[\n${[...lines].join(',\n')}\n]}\n`;
    const file = path.join(this.directory, SNAPSHOT);
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}${TMP_SUFFIX}`;
    try {
      const handle = await fs.open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (this.failedWith) throw this.failedWith; // e.g. the lease was lost: replace no snapshot
      await fs.rename(tmp, file);
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw error;
    }
    await this.syncDirectory();
    return Buffer.byteLength(text, 'utf8');
  }

  // ---- opening ---------------------------------------------------------------------------------------

  private async recover(): Promise<void> {
    const names = await fs.readdir(this.directory);
    const leftovers = names.filter((name) => name.endsWith(TMP_SUFFIX));
    await Promise.all(leftovers.map((name) => fs.rm(path.join(this.directory, name), { force: true })));
    const logs = names
      .map((name) => LOG_PATTERN.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => ({ name: match[0], number: Number(match[1]) }));
    const legacy = names.filter((name) => name.endsWith('.json') && SLUG_PATTERN.test(name.slice(0, -'.json'.length)));

    const snapshotFile = path.join(this.directory, SNAPSHOT);
    let snapshotText: string | undefined;
    try {
      snapshotText = await fs.readFile(snapshotFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new AdapterStateError(`cannot read state snapshot ${snapshotFile}: ${describeError(error)}`);
      }
    }

    if (snapshotText === undefined) {
      if (logs.length > 0) {
        throw new AdapterStateError(`state directory ${this.directory} holds ${logs.map((log) => log.name).join(', ')} but no ${SNAPSHOT}: refusing to guess what is missing`);
      }
      await this.importLegacy(legacy); // or start empty
    } else {
      this.readSnapshot(snapshotFile, snapshotText);
      await this.dropImportedLegacy(legacy);
    }

    let deleted = false;
    for (const log of logs) {
      if (log.number > this.logNumber) {
        throw new AdapterStateError(`state log ${path.join(this.directory, log.name)} is newer than ${snapshotFile} (log ${this.logNumber}): refusing to guess what is missing`);
      }
      if (log.number < this.logNumber) {
        await fs.rm(path.join(this.directory, log.name), { force: true }); // outdated by the snapshot
        deleted = true;
      }
    }
    const existed = logs.some((log) => log.number === this.logNumber);
    if (existed) await this.replayLog();
    this.log = await fs.open(this.logPath(), 'a', 0o600);
    if (deleted || !existed) await this.syncDirectory();
  }

  private readSnapshot(file: string, text: string): void {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new AdapterStateError(`state snapshot ${file} is not valid JSON: ${describeError(error)}`);
    }
    const snapshot = SnapshotSchema.safeParse(json);
    if (!snapshot.success) throw new AdapterStateError(`state snapshot ${file} is not a snapshot: ${snapshot.error.message}`);
    snapshot.data.records.forEach((raw, index) => {
      const record = SystemStateRecordSchema.safeParse(raw);
      if (!record.success) {
        throw new AdapterStateError(`state snapshot ${file} does not hold a valid record at index ${index}: ${record.error.message}`);
      }
      this.records.set(record.data.systemId, JSON.stringify(record.data));
    });
    this.logNumber = snapshot.data.log;
    this.snapshotSize = Buffer.byteLength(text, 'utf8');
  }

  private async replayLog(): Promise<void> {
    const file = this.logPath();
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch (error) {
      throw new AdapterStateError(`cannot read state log ${file}: ${describeError(error)}`);
    }
    let start = 0;
    for (let lineNumber = 1; ; lineNumber++) {
      const end = bytes.indexOf(NEWLINE, start);
      if (end === -1) break;
      const where = `state log ${file} line ${lineNumber}`;
      let json: unknown;
      try {
        json = JSON.parse(bytes.toString('utf8', start, end));
      } catch (error) {
        throw new AdapterStateError(`${where} is not valid JSON (only a torn last line without a newline is tolerated): ${describeError(error)}`);
      }
      const record = SystemStateRecordSchema.safeParse(json);
      if (!record.success) throw new AdapterStateError(`${where} does not hold a valid record: ${record.error.message}`);
      this.records.set(record.data.systemId, JSON.stringify(record.data));
      start = end + 1;
    }
    this.logSize = start;
    if (start < bytes.length) {
      // A torn write: never acknowledged, since every flush ends in a newline before its datasync.
      const handle = await fs.open(file, 'r+');
      try {
        await handle.truncate(start);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    }
  }

  /** The first snapshot: the records of a `FileAdapterStateStore` directory, or none. */
  private async importLegacy(legacy: string[]): Promise<void> {
    const files = new FileAdapterStateStore(this.directory);
    for (const name of legacy) {
      const systemId = name.slice(0, -'.json'.length);
      const record = await files.load(systemId); // validates; throws AdapterStateError naming the file
      if (record) this.records.set(systemId, JSON.stringify(record));
    }
    this.logNumber = 1;
    this.snapshotSize = await this.writeSnapshot(this.logNumber, this.records.values());
    if (legacy.length === 0) return;
    await Promise.all(legacy.map((name) => fs.rm(path.join(this.directory, name), { force: true })));
    await this.syncDirectory();
  }

  /** Legacy files next to a snapshot: left over by an import that a crash interrupted, or not? */
  private async dropImportedLegacy(legacy: string[]): Promise<void> {
    if (legacy.length === 0) return;
    const files = new FileAdapterStateStore(this.directory);
    for (const name of legacy) {
      const systemId = name.slice(0, -'.json'.length);
      const record = await files.load(systemId);
      if (record && JSON.stringify(record) !== this.records.get(systemId)) {
        throw new AdapterStateError(
          `state directory ${this.directory} holds both ${SNAPSHOT} and ${name}, which differs from the snapshot's record (was an older adapter version run on it?): move one of them away`,
        );
      }
    }
    await Promise.all(legacy.map((name) => fs.rm(path.join(this.directory, name), { force: true })));
    await this.syncDirectory();
  }

  // ---- lease ---------------------------------------------------------------------------------------

  private lockPath(): string {
    return path.join(this.directory, LOCK);
  }

  private async acquireLock(): Promise<void> {
    const key = await fs.realpath(this.directory);
    if (openDirectories.has(key)) {
      throw new AdapterStateError(`state directory ${this.directory} is already in use by another state store of this process`);
    }
    openDirectories.add(key);
    this.lockKey = key;
    try {
      await this.takeLease();
    } catch (error) {
      this.lease = undefined;
      openDirectories.delete(key);
      this.lockKey = undefined;
      throw error;
    }
    this.scheduleRenewal();
  }

  private async takeLease(): Promise<void> {
    const file = this.lockPath();
    for (let attempt = 1; attempt <= 3; attempt++) {
      const now = new Date();
      const lease: Lease = { token: randomBytes(16).toString('hex'), pid: process.pid, hostname: hostname(), acquiredAt: now.toISOString(), renewedAt: now.toISOString() };
      try {
        // A reader that sees the file before it is written finds no lease, modified just now: fresh.
        const handle = await fs.open(file, 'wx', 0o600);
        try {
          await handle.writeFile(`${JSON.stringify(lease)}\n`, 'utf8');
        } finally {
          await handle.close();
        }
        this.lease = lease;
        this.leaseRenewedAt = now.getTime();
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new AdapterStateError(`cannot lock state directory ${this.directory} (${file}): ${describeError(error)}`, { cause: error });
        }
      }
      const seen = await this.readLockFile();
      if (seen === undefined) continue; // released meanwhile: try again
      // A fresh lease: watch it. A live holder renews it within leaseRenewMs; one that crashed does not, and
      // its lease turns stale (at most leaseStaleMs after its last renewal): then it is taken over.
      const held = await this.waitUntilStaleOrRenewed(seen);
      if (held === undefined) continue; // released meanwhile: try again
      const age = Date.now() - held.renewedAt;
      if (age < this.leaseStaleMs) {
        throw new AdapterStateError(
          `state directory ${this.directory} is in use: ${file} holds ${describeHolder(held)}, last renewed ${new Date(held.renewedAt).toISOString()} ` +
            `(${seconds(Math.max(0, age))} ago), and renews it: another adapter is running on this directory. Two adapters must never share ` +
            `a state directory. (A lease that is not renewed for ${seconds(this.leaseStaleMs)} is taken over: an adapter that crashed ` +
            `restarts on its directory after at most that.)`,
        );
      }
      // Stale: take it over, then read it back after a moment, in case another instance did the same.
      this.lease = lease;
      this.leaseRenewedAt = now.getTime();
      try {
        await this.writeLease(lease);
      } catch (error) {
        throw new AdapterStateError(`cannot take over the stale lease in ${file}: ${describeError(error)}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.leaseRenewMs, 1_000)));
      const after = await this.readLockFile().catch(() => undefined);
      if (after?.lease?.token !== lease.token) {
        throw new AdapterStateError(
          `state directory ${this.directory}: took over the stale lease in ${file} (${describeHolder(held)}, last renewed ` +
            `${new Date(held.renewedAt).toISOString()}), but ${after ? describeHolder(after) : 'nobody'} holds it now: another instance took it over ` +
            `at the same time. Two adapters must never share a state directory`,
        );
      }
      return;
    }
    throw new AdapterStateError(`cannot lock state directory ${this.directory}: ${file} keeps appearing and disappearing`);
  }

  /**
   * Re-reads a fresh lease until it is renewed (or replaced: a live holder — returned as read then) or turns
   * stale (returned as last read); `undefined` if the lock file disappears.
   */
  private async waitUntilStaleOrRenewed(seen: LockFileContent): Promise<LockFileContent | undefined> {
    const pollMs = Math.max(10, Math.min(250, this.leaseRenewMs / 4));
    let current = seen;
    while (Date.now() - current.renewedAt < this.leaseStaleMs) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      const next = await this.readLockFile();
      if (next === undefined) return undefined;
      if (next.renewedAt !== seen.renewedAt || next.lease?.token !== seen.lease?.token) return next;
      current = next;
    }
    return current;
  }

  /** `undefined`: there is no lock file. */
  private async readLockFile(): Promise<LockFileContent | undefined> {
    const file = this.lockPath();
    let text: string;
    let modified: number;
    try {
      const handle = await fs.open(file, 'r');
      try {
        modified = (await handle.stat()).mtimeMs;
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AdapterStateError(`cannot read ${file}: ${describeError(error)}`, { cause: error });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const lease = LeaseSchema.safeParse(json);
    const renewedAt = lease.success ? Date.parse(lease.data.renewedAt) : Number.NaN;
    return lease.success && !Number.isNaN(renewedAt) ? { lease: lease.data, renewedAt, text } : { renewedAt: modified, text };
  }

  /** Replaces the lock file atomically. */
  private async writeLease(lease: Lease): Promise<void> {
    const file = this.lockPath();
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}${TMP_SUFFIX}`;
    try {
      await fs.writeFile(tmp, `${JSON.stringify(lease)}\n`, { encoding: 'utf8', mode: 0o600, flag: 'wx' });
      await fs.rename(tmp, file);
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw error;
    }
  }

  private scheduleRenewal(): void {
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      // A failed store writes nothing more: it lets its lease turn stale, so that a replacement can start.
      if (this.failedWith) return;
      void this.renewLease().finally(() => {
        if (this.lease) this.scheduleRenewal();
      });
    }, this.leaseRenewMs);
    this.renewTimer.unref();
  }

  private renewLease(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  /** Checks that the lease is still ours and renews it; fails the store if it is not, or cannot be renewed in time. */
  private async renewOnce(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    const file = this.lockPath();
    try {
      const held = await this.readLockFile();
      if (held?.lease?.token !== lease.token) {
        this.loseLease(
          held
            ? `${file} now holds ${describeHolder(held)}: another instance took the lease over (ours was last renewed ${new Date(this.leaseRenewedAt).toISOString()})`
            : `${file} was deleted while this store held it`,
        );
        return;
      }
      const renewedAt = new Date();
      const renewed = { ...lease, renewedAt: renewedAt.toISOString() };
      await this.writeLease(renewed);
      if (this.lease === lease) {
        this.lease = renewed;
        this.leaseRenewedAt = renewedAt.getTime();
      }
    } catch (error) {
      // Try again at the next renewal, unless others may soon see the lease as stale.
      if (Date.now() - this.leaseRenewedAt >= this.leaseStaleMs - this.leaseRenewMs) {
        this.loseLease(`could not renew the lease in ${file} since ${new Date(this.leaseRenewedAt).toISOString()}: ${describeError(error)}`);
      }
    }
  }

  /** From now on the directory may be someone else's: never write to it again. */
  private loseLease(reason: string): void {
    this.lease = undefined;
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.failedWith ??= new AdapterStateError(
      `state directory ${this.directory} is no longer ours: ${reason}. Two adapters must never share a state directory; this store saves nothing more, restart the adapter`,
    );
  }

  /** Stops renewing and deletes the lock file if it still holds our lease. */
  private async releaseLock(): Promise<void> {
    if (this.lockKey === undefined) return;
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    const lease = this.lease;
    this.lease = undefined; // no renewal after this
    try {
      await this.renewing;
      if (lease) {
        // Not atomic against a takeover between the read and the deletion, which needs a lease that
        // went stale while we still held it: then we were failed already, or about to be.
        const held = await this.readLockFile().catch(() => undefined);
        if (held?.lease?.token === lease.token) await fs.rm(this.lockPath(), { force: true });
      }
    } finally {
      openDirectories.delete(this.lockKey);
      this.lockKey = undefined;
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------------

  private logPath(): string {
    return path.join(this.directory, `state.${this.logNumber}.log`);
  }

  /** Makes renames, creations and deletions in the directory durable. */
  private async syncDirectory(): Promise<void> {
    const handle = await fs.open(this.directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

async function writeFully(handle: fs.FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, null);
    if (bytesWritten <= 0) throw new Error(`wrote ${bytesWritten} bytes`);
    offset += bytesWritten;
  }
}

function describeHolder(held: LockFileContent): string {
  if (!held.lease) return `no lease (${JSON.stringify(held.text.slice(0, 40))}: an older adapter version's lock?)`;
  const { hostname: host, pid, acquiredAt } = held.lease;
  return `the lease of host ${host} pid ${pid} (acquired ${acquiredAt})`;
}

function seconds(ms: number): string {
  return `${(ms / 1_000).toFixed(1)} s`;
}
