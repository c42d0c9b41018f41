import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
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
}

/** Directories held open by a store of this process (the lock file cannot tell our own stores apart). */
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
 * with `AdapterStateError`, and a restart reads the truth back from disk.
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
 * Lock: `state.lock` is created exclusively and holds the pid. A lock whose process is alive stops the
 * adapter; a lock of a dead process (or of this pid, e.g. a restarted container, but no store of this
 * process) is stale and taken over. Within one process an in-memory set of open directories does the
 * job, so a store that was closed never blocks the next one. Taking over a stale lock is not atomic
 * against a second process doing the same at the same instant; the lock protects against two adapters
 * configured with one directory, not against that race. `close()` finishes the flushes in flight and
 * releases the lock.
 *
 * Files are created with mode 0600, the directory with 0700.
 */
export class LogStructuredStateStore implements AdapterStateStore {
  private readonly compactMinBytes: number;
  private readonly compactFactor: number;
  private phase: Phase = 'new';
  /** Why the store refuses to save any more, once it does. */
  private failure?: AdapterStateError;
  private lockKey?: string;
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
    if (this.failure) return Promise.reject(this.failure);
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

  /** Waits for the saves already made (new ones are refused), then releases the log and the lock. Idempotent. */
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
        if (!this.failure && this.logSize > this.compactionThreshold()) await this.compact();
      } catch (error) {
        // Not expected (flush and compact handle their errors); never leave a save hanging.
        this.failure ??= new AdapterStateError(`state store ${this.directory} failed: ${describeError(error)}`, { cause: error });
        for (const save of batch) save.reject(this.failure);
      }
    }
  }

  private async flush(batch: PendingSave[]): Promise<void> {
    if (this.failure) {
      for (const save of batch) save.reject(this.failure);
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
      this.failure = new AdapterStateError(
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
      this.failure = new AdapterStateError(
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

  // ---- lock ------------------------------------------------------------------------------------------

  private async acquireLock(): Promise<void> {
    const key = await fs.realpath(this.directory);
    if (openDirectories.has(key)) {
      throw new AdapterStateError(`state directory ${this.directory} is already in use by another state store of this process`);
    }
    openDirectories.add(key);
    this.lockKey = key;
    const file = path.join(this.directory, LOCK);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const handle = await fs.open(file, 'wx', 0o600);
          try {
            await handle.writeFile(`${process.pid}\n`, 'utf8');
            await handle.sync();
          } finally {
            await handle.close();
          }
          return;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 1) {
            throw new AdapterStateError(`cannot lock state directory ${this.directory} (${file}): ${describeError(error)}`);
          }
        }
        const holder = Number.parseInt(await fs.readFile(file, 'utf8').catch(() => ''), 10);
        if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
          throw new AdapterStateError(
            `state directory ${this.directory} is locked by process ${holder} (${file}): two adapters must never share a state directory. Delete the lock file only if that process is not an adapter`,
          );
        }
        await fs.rm(file, { force: true }); // stale: its process is gone (or it is our pid, and no store of ours holds it)
      }
    } catch (error) {
      openDirectories.delete(key);
      this.lockKey = undefined;
      throw error;
    }
  }

  private async releaseLock(): Promise<void> {
    if (this.lockKey === undefined) return;
    try {
      await fs.rm(path.join(this.directory, LOCK), { force: true });
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, but someone else's
  }
}
