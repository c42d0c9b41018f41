import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { AdapterStateError } from './adapter-state.error';
import { FileAdapterStateStore } from './file-adapter-state.store';
import { revokedSystemState } from '../testing/system-state.fixture';
import { emptySystemState, type SystemStateRecord } from './system-state';

function recordAt(generation: number): SystemStateRecord {
  return revokedSystemState('stock-db', generation);
}

describe('FileAdapterStateStore', () => {
  let dir: string;
  let store: FileAdapterStateStore;

  beforeEach(async () => {
    dir = path.join(await fs.mkdtemp(path.join(tmpdir(), 'adapter-state-')), 'state');
    store = new FileAdapterStateStore(dir);
    await store.open();
  });

  afterEach(() => jest.restoreAllMocks());

  it('round-trips a record, one file per system, and knows nothing of systems it never saved', async () => {
    const record = recordAt(3);
    await store.save(record);

    expect(await store.load('stock-db')).toEqual(record);
    expect(await store.load('ledger-db')).toBeUndefined();
    expect(await fs.readdir(dir)).toEqual(['stock-db.json']);
  });

  it('writes through an fsynced temporary file that is renamed over the record, then fsyncs the directory', async () => {
    const steps: string[] = [];
    const open = fs.open;
    jest.spyOn(fs, 'open').mockImplementation(async (...args: Parameters<typeof fs.open>) => {
      const handle = await open(...args);
      const sync = handle.sync.bind(handle);
      const name = path.basename(String(args[0]));
      handle.sync = async () => {
        steps.push(`fsync ${name.endsWith('.tmp') ? 'tmp' : name}`);
        return sync();
      };
      return handle;
    });
    const rename = fs.rename;
    jest.spyOn(fs, 'rename').mockImplementation(async (from, to) => {
      steps.push(`rename tmp -> ${path.basename(String(to))}`);
      return rename(from, to);
    });

    await store.save(recordAt(1));

    expect(steps).toEqual(['fsync tmp', 'rename tmp -> stock-db.json', 'fsync state']);
  });

  it('keeps the previous record intact when a write fails, and leaves no temporary file behind', async () => {
    await store.save(recordAt(1));
    jest.spyOn(fs, 'rename').mockRejectedValueOnce(Object.assign(new Error('disk full'), { code: 'ENOSPC' }));

    await expect(store.save(recordAt(2))).rejects.toThrow('disk full');

    expect((await store.load('stock-db'))?.desired?.generation).toBe(1);
    expect(await fs.readdir(dir)).toEqual(['stock-db.json']);
  });

  it('clears temporary files of interrupted writes when opened', async () => {
    await store.save(recordAt(1));
    await fs.writeFile(path.join(dir, 'stock-db.json.1234-abcdef.tmp'), '{"format":1,"syst');

    await new FileAdapterStateStore(dir).open();

    expect(await fs.readdir(dir)).toEqual(['stock-db.json']);
    expect((await store.load('stock-db'))?.desired?.generation).toBe(1);
  });

  it('refuses to start from a corrupt or foreign record instead of silently forgetting it', async () => {
    await fs.writeFile(path.join(dir, 'stock-db.json'), '{"format":1,"syst');
    await expect(store.load('stock-db')).rejects.toThrow(AdapterStateError);

    await fs.writeFile(path.join(dir, 'stock-db.json'), JSON.stringify(emptySystemState('ledger-db')));
    await expect(store.load('stock-db')).rejects.toThrow('it belongs to system "ledger-db"');

    await fs.writeFile(path.join(dir, 'stock-db.json'), JSON.stringify({ format: 1, systemId: 'stock-db' }));
    await expect(store.load('stock-db')).rejects.toThrow('does not hold a valid record');
  });
});
