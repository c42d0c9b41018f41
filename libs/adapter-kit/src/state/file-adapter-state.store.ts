import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { describeError } from '../logging/describe-error';
import { AdapterStateError } from './adapter-state.error';
import type { AdapterStateStore } from './adapter-state.store';
import { SystemStateRecordSchema, type SystemStateRecord } from './system-state';

const TMP_SUFFIX = '.tmp';

/**
 * One JSON file per system (`<systemId>.json`) in the state directory. Every save is atomic and durable:
 * write a temporary file, fsync it, rename it over the old file, fsync the directory. A crash leaves
 * either the old or the new record, never a torn one.
 */
export class FileAdapterStateStore implements AdapterStateStore {
  constructor(private readonly directory: string) {}

  async open(): Promise<void> {
    await fs.mkdir(this.directory, { recursive: true, mode: 0o700 });
    const leftovers = (await fs.readdir(this.directory)).filter((name) => name.endsWith(TMP_SUFFIX));
    await Promise.all(leftovers.map((name) => fs.rm(path.join(this.directory, name), { force: true })));
  }

  async load(systemId: string): Promise<SystemStateRecord | undefined> {
    const file = this.fileOf(systemId);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AdapterStateError(`cannot read state file ${file}: ${describeError(error)}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new AdapterStateError(`state file ${file} is not valid JSON: ${describeError(error)}`);
    }
    const parsed = SystemStateRecordSchema.safeParse(json);
    if (!parsed.success || parsed.data.systemId !== systemId) {
      const reason = parsed.success ? `it belongs to system "${parsed.data.systemId}"` : parsed.error.message;
      throw new AdapterStateError(`state file ${file} does not hold a valid record: ${reason}`);
    }
    return parsed.data;
  }

  async save(record: SystemStateRecord): Promise<void> {
    const file = this.fileOf(record.systemId);
    const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}${TMP_SUFFIX}`;
    try {
      const handle = await fs.open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(record)}\n`, 'utf8');
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
  }

  private fileOf(systemId: string): string {
    // System ids are slugs (validated by the config), so they are safe file names.
    return path.join(this.directory, `${systemId}.json`);
  }

  /** Makes the rename itself durable. */
  private async syncDirectory(): Promise<void> {
    const handle = await fs.open(this.directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
