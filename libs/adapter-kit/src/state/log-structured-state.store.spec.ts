import { promises as fs } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { eventually } from '@test/support/eventually';
import { AdapterStateError } from './adapter-state.error';
import { FileAdapterStateStore } from './file-adapter-state.store';
import { LogStructuredStateStore, type LogStructuredStateStoreOptions } from './log-structured-state.store';
import { revokedSystemState } from '../testing/system-state.fixture';

const recordOf = revokedSystemState;

const isLog = (file: string) => /state\.[0-9]+\.log$/.test(file);

/** Counts what really reaches the log files: every `write` and `datasync` on a handle of a log. */
function spyOnLogHandles(tamper: { write?: (call: number) => Error | undefined; truncate?: () => Error | undefined } = {}) {
  const counts = { writes: 0, datasyncs: 0 };
  const open = fs.open;
  jest.spyOn(fs, 'open').mockImplementation(async (...args: Parameters<typeof fs.open>) => {
    const handle = await open(...args);
    if (!isLog(String(args[0]))) return handle;
    const write = handle.write.bind(handle) as (...writeArgs: unknown[]) => Promise<{ bytesWritten: number }>;
    const datasync = handle.datasync.bind(handle);
    const truncate = handle.truncate.bind(handle);
    handle.write = (async (...writeArgs: unknown[]) => {
      counts.writes += 1;
      const failure = tamper.write?.(counts.writes);
      if (failure) {
        // A write that fails after putting half the bytes on the file (as a full disk may).
        const [buffer, offset, length] = writeArgs as [Buffer, number, number];
        await write(buffer, offset, Math.floor(length / 2), null);
        throw failure;
      }
      return write(...writeArgs);
    }) as typeof handle.write;
    handle.datasync = async () => {
      counts.datasyncs += 1;
      return datasync();
    };
    handle.truncate = async (length?: number) => {
      const failure = tamper.truncate?.();
      if (failure) throw failure;
      return truncate(length);
    };
    return handle;
  });
  return counts;
}

describe('LogStructuredStateStore', () => {
  let dir: string;
  const stores: LogStructuredStateStore[] = [];

  async function opened(options?: LogStructuredStateStoreOptions): Promise<LogStructuredStateStore> {
    const store = new LogStructuredStateStore(dir, options);
    stores.push(store);
    await store.open();
    return store;
  }

  async function reopened(store: LogStructuredStateStore, options?: LogStructuredStateStoreOptions): Promise<LogStructuredStateStore> {
    await store.close();
    return opened(options);
  }

  const file = (name: string) => path.join(dir, name);
  const logLines = async (name = 'state.1.log') => (await fs.readFile(file(name), 'utf8')).split('\n').filter(Boolean);

  beforeEach(async () => {
    dir = path.join(await fs.mkdtemp(path.join(tmpdir(), 'adapter-log-state-')), 'state');
  });

  afterEach(async () => {
    jest.restoreAllMocks();
    await Promise.all(stores.splice(0).map((store) => store.close()));
  });

  it('round-trips a record, knows nothing of systems it never saved, and keeps its files private', async () => {
    const store = await opened();
    const record = recordOf('stock-db', 3);
    await store.save(record);

    expect(await store.load('stock-db')).toEqual(record);
    expect(await store.load('ledger-db')).toBeUndefined();
    expect((await fs.readdir(dir)).sort()).toEqual(['state.1.log', 'state.lock', 'state.snapshot.json']);
    expect(await logLines()).toEqual([JSON.stringify(record)]);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
    for (const name of ['state.1.log', 'state.lock', 'state.snapshot.json']) {
      expect((await fs.stat(file(name))).mode & 0o777).toBe(0o600);
    }
  });

  it('commits concurrent saves as a group: one write and one datasync for all of them', async () => {
    const counts = spyOnLogHandles();
    const store = await opened();

    await Promise.all(Array.from({ length: 50 }, (_, index) => store.save(recordOf(`system-${index}`, 1))));

    expect(counts).toEqual({ writes: 1, datasyncs: 1 });
    expect(await logLines()).toHaveLength(50);
  });

  it('puts saves made during a flush into the next flush, and resolves each only once it is synced', async () => {
    const counts = spyOnLogHandles();
    const store = await opened();
    const settled: string[] = [];

    const first = store.save(recordOf('stock-db', 1)).then(() => settled.push(`first after ${counts.datasyncs} datasync(s)`));
    await new Promise((resolve) => setImmediate(resolve)); // the first flush has started
    const later = Array.from({ length: 10 }, (_, index) =>
      store.save(recordOf(`system-${index}`, 1)).then(() => settled.push(`later after ${counts.datasyncs} datasync(s)`)),
    );
    await Promise.all([first, ...later]);

    expect(counts).toEqual({ writes: 2, datasyncs: 2 });
    expect(settled).toEqual(['first after 1 datasync(s)', ...Array(10).fill('later after 2 datasync(s)')]);
  });

  it('keeps the latest record of a system, also after reopening', async () => {
    let store = await opened();
    await store.save(recordOf('stock-db', 1));
    await Promise.all([store.save(recordOf('stock-db', 2)), store.save(recordOf('ledger-db', 1))]);
    await store.save(recordOf('stock-db', 3));

    expect((await store.load('stock-db'))?.desired?.generation).toBe(3);
    store = await reopened(store);
    expect((await store.load('stock-db'))?.desired?.generation).toBe(3);
    expect((await store.load('ledger-db'))?.desired?.generation).toBe(1);
    expect(await fs.readdir(dir)).not.toContain('state.2.log');
  });

  it('is not changed by a caller mutating its objects after a save or a load', async () => {
    const store = await opened();
    const record = recordOf('stock-db', 1);
    const saved = store.save(record);
    record.desired!.generation = 99;
    (record.journal as { revokedRoles: string[] }).revokedRoles.push('intruder');
    await saved;

    const loaded = await store.load('stock-db');
    expect(loaded?.desired?.generation).toBe(1);
    expect(loaded?.journal).toEqual({ revokedRoles: ['clerk'] });
    loaded!.deliveredAckGeneration = 42;
    expect((await store.load('stock-db'))?.deliveredAckGeneration).toBe(1);
  });

  it('ignores and cuts off a torn last line, and goes on appending after the last complete one', async () => {
    let store = await opened();
    await store.save(recordOf('stock-db', 1));
    await store.close();
    const intact = (await fs.stat(file('state.1.log'))).size;
    await fs.appendFile(file('state.1.log'), JSON.stringify(recordOf('stock-db', 2)).slice(0, 40));

    store = await opened();
    expect((await store.load('stock-db'))?.desired?.generation).toBe(1);
    expect((await fs.stat(file('state.1.log'))).size).toBe(intact);

    await store.save(recordOf('stock-db', 3));
    store = await reopened(store);
    expect((await store.load('stock-db'))?.desired?.generation).toBe(3);
    expect(await logLines()).toHaveLength(2);
  });

  it('refuses to open with a corrupt line before the end, a line that is no valid record, or a corrupt snapshot', async () => {
    const store = await opened();
    await store.save(recordOf('stock-db', 1));
    await store.save(recordOf('stock-db', 2));
    await store.close();
    const lines = await logLines();

    await fs.writeFile(file('state.1.log'), `${lines[0]}\n{"format":1,"syst\n${lines[1]}\n`);
    await expect(opened()).rejects.toThrow(AdapterStateError);
    await expect(opened()).rejects.toThrow(`state log ${file('state.1.log')} line 2 is not valid JSON`);

    await fs.writeFile(file('state.1.log'), `${lines[0]}\n${JSON.stringify({ format: 1, systemId: 'stock-db' })}\n`);
    await expect(opened()).rejects.toThrow(`state log ${file('state.1.log')} line 2 does not hold a valid record`);

    await fs.writeFile(file('state.1.log'), `${lines[0]}\n`);
    await fs.writeFile(file('state.snapshot.json'), '{"format":1,"log":1,"rec');
    await expect(opened()).rejects.toThrow(`state snapshot ${file('state.snapshot.json')} is not valid JSON`);

    await fs.writeFile(file('state.snapshot.json'), JSON.stringify({ format: 1, log: 1, records: [{ format: 1, systemId: 'x y' }] }));
    await expect(opened()).rejects.toThrow('does not hold a valid record at index 0');

    // A failed open holds no lock: once repaired, the directory opens.
    await fs.writeFile(file('state.snapshot.json'), JSON.stringify({ format: 1, log: 1, records: [] }));
    expect((await (await opened()).load('stock-db'))?.desired?.generation).toBe(1);
  });

  it('refuses a log without a snapshot, and a log newer than the snapshot', async () => {
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(file('state.1.log'), `${JSON.stringify(recordOf('stock-db', 1))}\n`);
    await expect(opened()).rejects.toThrow('but no state.snapshot.json');

    await fs.writeFile(file('state.snapshot.json'), JSON.stringify({ format: 1, log: 1, records: [] }));
    await fs.writeFile(file('state.2.log'), `${JSON.stringify(recordOf('stock-db', 2))}\n`);
    await expect(opened()).rejects.toThrow(`state log ${file('state.2.log')} is newer than`);
  });

  it('compacts a grown log into a new snapshot and log, losing no save made during compaction', async () => {
    const options = { compactMinBytes: 4_000, compactFactor: 2 };
    let store = await opened(options);
    const latest = new Map<string, number>();
    for (let round = 1; round <= 30; round++) {
      // Saves keep coming while earlier flushes (and compactions) run.
      const saves = Array.from({ length: 5 }, (_, index) => {
        const systemId = `system-${(round * 5 + index) % 12}`;
        latest.set(systemId, round);
        return store.save(recordOf(systemId, round));
      });
      if (round % 3 === 0) await Promise.all(saves);
      else void Promise.all(saves);
    }
    await store.close();

    const names = await fs.readdir(dir);
    const logs = names.filter(isLog);
    expect(logs).toHaveLength(1);
    expect(Number(/([0-9]+)/.exec(logs[0])![1])).toBeGreaterThan(2);
    const snapshot = JSON.parse(await fs.readFile(file('state.snapshot.json'), 'utf8'));
    expect(`state.${snapshot.log}.log`).toBe(logs[0]);

    store = await opened(options);
    for (const [systemId, round] of latest) expect((await store.load(systemId))?.desired?.generation).toBe(round);
  });

  it('recovers from a crash between the snapshot rename and the deletion of the old log', async () => {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const [old, current, other] = [recordOf('stock-db', 1), recordOf('stock-db', 2), recordOf('ledger-db', 1)];
    // Snapshot 2 holds everything the old log held; the new log was never created.
    await fs.writeFile(file('state.snapshot.json'), JSON.stringify({ format: 1, log: 2, records: [current, other] }));
    await fs.writeFile(file('state.1.log'), `${JSON.stringify(old)}\n${JSON.stringify(current)}\n${JSON.stringify(other)}\n`);
    await fs.writeFile(file('state.snapshot.json.1234-abcdef.tmp'), '{"format":1,"log":3,"rec');

    let store = await opened();
    expect(await store.load('stock-db')).toEqual(current);
    expect(await store.load('ledger-db')).toEqual(other);
    expect((await fs.readdir(dir)).sort()).toEqual(['state.2.log', 'state.lock', 'state.snapshot.json']);

    await store.save(recordOf('ledger-db', 2));
    store = await reopened(store);
    expect((await store.load('ledger-db'))?.desired?.generation).toBe(2);
    expect(await store.load('stock-db')).toEqual(current);
  });

  it('recovers from a crash before the snapshot rename: the old snapshot and log hold everything', async () => {
    let store = await opened();
    await store.save(recordOf('stock-db', 1));
    await store.save(recordOf('stock-db', 2));
    await store.close();
    await fs.writeFile(file('state.snapshot.json.1234-abcdef.tmp'), '{"format":1,"log":2,"records":[');

    store = await opened();
    expect((await store.load('stock-db'))?.desired?.generation).toBe(2);
    expect((await fs.readdir(dir)).sort()).toEqual(['state.1.log', 'state.lock', 'state.snapshot.json']);
  });

  it('imports a directory of FileAdapterStateStore files as its first snapshot, then deletes them', async () => {
    const legacy = new FileAdapterStateStore(dir);
    await legacy.open();
    const [stock, ledger] = [recordOf('stock-db', 4), recordOf('ledger-db', 2)];
    await legacy.save(stock);
    await legacy.save(ledger);

    let store = await opened();
    expect(await store.load('stock-db')).toEqual(stock);
    expect(await store.load('ledger-db')).toEqual(ledger);
    expect((await fs.readdir(dir)).sort()).toEqual(['state.1.log', 'state.lock', 'state.snapshot.json']);
    const snapshot = JSON.parse(await fs.readFile(file('state.snapshot.json'), 'utf8'));
    expect(snapshot).toEqual({ format: 1, log: 1, records: expect.arrayContaining([stock, ledger]) });
    expect(snapshot.records).toHaveLength(2);

    store = await reopened(store);
    expect(await store.load('stock-db')).toEqual(stock);
  });

  it('finishes an import that a crash interrupted, and refuses a legacy file that differs from the snapshot', async () => {
    const legacy = new FileAdapterStateStore(dir);
    await legacy.open();
    await legacy.save(recordOf('stock-db', 4));
    await (await opened()).close();
    await legacy.save((await (await opened()).load('stock-db'))!); // as if its deletion never happened
    await Promise.all(stores.splice(0).map((store) => store.close()));

    await (await opened()).close();
    expect(await fs.readdir(dir)).not.toContain('stock-db.json');

    await legacy.save(recordOf('stock-db', 5)); // an older adapter version ran on the directory since
    await expect(opened()).rejects.toThrow('holds both state.snapshot.json and stock-db.json, which differs');
  });

  describe('lease on the directory (state.lock)', () => {
    const quick = { leaseRenewMs: 25, leaseStaleMs: 250 };
    const lease = (fields: Partial<Record<'token' | 'hostname' | 'acquiredAt' | 'renewedAt', string>> & { pid?: number } = {}) => ({
      token: 'f'.repeat(32),
      pid: 1,
      hostname: 'other-host',
      acquiredAt: new Date(Date.now() - 3_600_000).toISOString(),
      renewedAt: new Date().toISOString(),
      ...fields,
    });
    const writeLock = async (content: unknown) => {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.writeFile(file('state.lock'), typeof content === 'string' ? content : `${JSON.stringify(content)}\n`);
    };
    const readLock = async () => JSON.parse(await fs.readFile(file('state.lock'), 'utf8'));
    /** A live holder's renewal, written as the store writes it (temporary file, rename): never seen half-written. */
    let renewals = 0;
    const renewLock = async (content: unknown) => {
      const tmp = file(`state.lock.renewal-${(renewals += 1)}`);
      await fs.writeFile(tmp, `${JSON.stringify(content)}\n`);
      await fs.rename(tmp, file('state.lock'));
    };

    it('holds a lease with a random token, its pid and host, renews it, and deletes it on close', async () => {
      const store = await opened(quick);
      const first = await readLock();
      expect(first).toEqual({ token: expect.stringMatching(/^[0-9a-f]{32}$/), pid: process.pid, hostname: hostname(), acquiredAt: expect.any(String), renewedAt: first.acquiredAt });

      await eventually(async () => expect(Date.parse((await readLock()).renewedAt)).toBeGreaterThan(Date.parse(first.renewedAt)));
      expect(await readLock()).toMatchObject({ token: first.token, acquiredAt: first.acquiredAt });
      expect((await fs.stat(file('state.lock'))).mode & 0o777).toBe(0o600);

      await store.close();
      expect(await fs.readdir(dir)).not.toContain('state.lock');
    });

    it('refuses a lease its holder keeps renewing, whatever its pid or host, naming the holder', async () => {
      await writeLock(lease({ hostname: 'adapter-7f9c', pid: 1 }));
      // The holder, alive: it renews its lease.
      const renewing = setInterval(() => void renewLock(lease({ hostname: 'adapter-7f9c', pid: 1, renewedAt: new Date().toISOString() })), 20);
      try {
        const refused = opened(quick);
        await expect(refused).rejects.toThrow(AdapterStateError);
        await expect(refused).rejects.toThrow(/holds the lease of host adapter-7f9c pid 1 .*and renews it: another adapter is running on this directory/);
        // Our own host and pid are no exception (another container with this name, in another PID namespace).
        clearInterval(renewing);
        const ours = setInterval(() => void renewLock(lease({ pid: process.pid, hostname: hostname(), renewedAt: new Date().toISOString() })), 20);
        try {
          await expect(opened(quick)).rejects.toThrow(`holds the lease of host ${hostname()} pid ${process.pid}`);
        } finally {
          clearInterval(ours);
        }
      } finally {
        clearInterval(renewing);
      }
      await new Promise((resolve) => setTimeout(resolve, 50)); // let a last write land
      expect((await readLock()).token).toBe('f'.repeat(32)); // untouched
    });

    it('takes over a fresh lease that nobody renews once it turns stale, whatever its host or pid (a crashed adapter)', async () => {
      await writeLock(lease({ hostname: 'crashed-host', pid: 1 }));
      const started = Date.now();
      const store = await opened({ leaseRenewMs: 25, leaseStaleMs: 400 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(350); // it waited for the lease to turn stale
      expect(await readLock()).toMatchObject({ pid: process.pid, hostname: hostname() });
      expect((await readLock()).token).not.toBe('f'.repeat(32));
      await store.close();
    });

    it('takes over a lease that was not renewed for leaseStaleMs, and a stale lock file that holds no lease', async () => {
      await writeLock(lease({ renewedAt: new Date(Date.now() - 300).toISOString() }));
      let store = await opened(quick);
      expect(await readLock()).toMatchObject({ pid: process.pid, hostname: hostname() });
      expect((await readLock()).token).not.toBe('f'.repeat(32));
      await store.save(recordOf('stock-db', 1));
      await store.close();

      // An older version's pid lock: renewed, as far as anyone can tell, when it was last modified; taken
      // over once that is leaseStaleMs ago.
      await writeLock(`${process.pid}\n`);
      const started = Date.now();
      store = await opened(quick);
      expect(Date.now() - started).toBeGreaterThanOrEqual(200);
      expect((await store.load('stock-db'))?.desired?.generation).toBe(1);
      expect(await readLock()).toMatchObject({ pid: process.pid });
    });

    it('gives up a takeover when another instance took the lease over at the same time', async () => {
      await writeLock(lease({ renewedAt: new Date(Date.now() - 300).toISOString() }));
      const rename = fs.rename;
      jest.spyOn(fs, 'rename').mockImplementation(async (from, to) => {
        await rename(from, to);
        if (String(to) === file('state.lock')) await fs.writeFile(file('state.lock'), JSON.stringify(lease({ token: 'e'.repeat(32), hostname: 'rival' })));
      });

      await expect(opened(quick)).rejects.toThrow(/took over the stale lease .* but the lease of host rival pid 1 .* holds it now/);
      expect((await readLock()).token).toBe('e'.repeat(32)); // the rival's lease stays
      jest.restoreAllMocks();
      // The failed open let go of the directory in this process: a new store waits, finds the rival's lease
      // not renewed (nobody runs it here), and takes it over once stale.
      await (await opened(quick)).close();
    });

    it('fails, saves nothing more and leaves the lock alone once another instance took its lease over', async () => {
      const store = await opened(quick);
      await store.save(recordOf('stock-db', 1));
      expect(store.failure()).toBeUndefined();
      const rival = lease({ token: 'e'.repeat(32), hostname: 'rival', pid: 4242 });
      await writeLock(rival);

      await eventually(() => expect(store.failure()).toBeInstanceOf(AdapterStateError));
      expect(store.failure()!.message).toMatch(/is no longer ours: .*state\.lock now holds the lease of host rival pid 4242 .*another instance took the lease over.*restart the adapter/);
      await expect(store.save(recordOf('stock-db', 2))).rejects.toBe(store.failure());
      expect(await logLines()).toHaveLength(1);

      await store.close();
      expect(await readLock()).toEqual(rival); // not ours to delete
    });

    it('fails when its lock file was deleted', async () => {
      const store = await opened(quick);
      await fs.rm(file('state.lock'));
      await eventually(() => expect(store.failure()?.message).toMatch(/state\.lock was deleted while this store held it/));
    });

    it('checks the lease before a flush when it has not been renewed for long (a paused process), and writes nothing if it was lost', async () => {
      const store = await opened({ leaseRenewMs: 60_000, leaseStaleMs: 120_000 });
      await store.save(recordOf('stock-db', 1));
      await writeLock(lease({ token: 'e'.repeat(32), hostname: 'rival' }));
      const now = Date.now();
      jest.spyOn(Date, 'now').mockReturnValue(now + 120_000);

      await expect(store.save(recordOf('stock-db', 2))).rejects.toThrow(/no longer ours: .*holds the lease of host rival/);
      expect(await logLines()).toHaveLength(1);
    });

    it('fails when the lease cannot be renewed until it is about to turn stale', async () => {
      const store = await opened(quick);
      const rename = fs.rename;
      jest.spyOn(fs, 'rename').mockImplementation(async (from, to) => {
        if (String(to) === file('state.lock')) throw Object.assign(new Error('read-only file system'), { code: 'EROFS' });
        return rename(from, to);
      });

      await eventually(() => expect(store.failure()?.message).toMatch(/could not renew the lease in .*state\.lock since .*read-only file system/));
    });

    it('refuses a second store on a directory this process holds open at once, and opens at once after close', async () => {
      const first = await opened();
      await expect(opened()).rejects.toThrow('already in use by another state store of this process');
      await first.close();

      const started = Date.now();
      await (await opened()).save(recordOf('stock-db', 1));
      expect(Date.now() - started).toBeLessThan(1_000);
    });
  });

  it('rejects every save of a failed flush, cuts the half-written line off, and goes on', async () => {
    spyOnLogHandles({ write: (call) => (call === 2 ? Object.assign(new Error('disk full'), { code: 'ENOSPC' }) : undefined) });

    const store = await opened();
    await store.save(recordOf('stock-db', 1));
    const failed = [store.save(recordOf('stock-db', 2)), store.save(recordOf('ledger-db', 1))];
    await expect(failed[0]).rejects.toThrow(AdapterStateError);
    await expect(failed[1]).rejects.toThrow('disk full');
    expect(await logLines()).toHaveLength(1);
    expect((await store.load('stock-db'))?.desired?.generation).toBe(1);
    expect(await store.load('ledger-db')).toBeUndefined();

    await store.save(recordOf('stock-db', 3));
    const reopenedStore = await reopened(store);
    expect((await reopenedStore.load('stock-db'))?.desired?.generation).toBe(3);
    expect(await reopenedStore.load('ledger-db')).toBeUndefined();
  });

  it('fails for good when a failed flush cannot be cut back, so no later save claims durability', async () => {
    spyOnLogHandles({
      write: (call) => (call === 2 ? new Error('disk full') : undefined),
      truncate: () => new Error('I/O error'),
    });
    const store = await opened();
    await store.save(recordOf('stock-db', 1));

    await expect(store.save(recordOf('stock-db', 2))).rejects.toThrow('disk full');
    await expect(store.save(recordOf('stock-db', 3))).rejects.toThrow(/could not be cut back .*I\/O error.*restart the adapter/);
    await expect(store.save(recordOf('stock-db', 4))).rejects.toThrow(AdapterStateError);
  });

  it('on close, waits for the saves in flight and refuses new ones', async () => {
    const store = await opened();
    const saved = store.save(recordOf('stock-db', 1));
    const closed = store.close();
    await expect(store.save(recordOf('stock-db', 2))).rejects.toThrow('is closing');
    await Promise.all([saved, closed]);

    expect((await (await opened()).load('stock-db'))?.desired?.generation).toBe(1);
  });
});
