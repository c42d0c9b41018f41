/**
 * Test/local-stack harness for a throwaway Redis: the Debian `redis-server` binary run in the
 * foreground as a child of this process, on 127.0.0.1 and a free port.
 *
 *   const redis = await startRedis({ name: 'target-redis', baseDir: workDir });
 *   createClient({ url: redis.url });   // redis://default:<password>@127.0.0.1:<port>
 *   await redis.kill();                 // SIGKILL: a target that goes down
 *   await redis.start();                // back on the same port; ACL users kept (aclfile)
 *   await redis.stop();                 // SIGTERM, SIGKILL after 10 s
 *
 * - Each call starts a fresh server in `<baseDir>/<name>/` (deleted first if left over): its log
 *   (`redis.log`) and its ACL file (`users.acl`). No RDB, no AOF (`--save '' --appendonly no`): keys
 *   are lost on a restart, ACL users are not. The `default` user gets a random password.
 * - With `aclFile: false` the server keeps ACL users in memory only (`ACL SAVE` is refused and a
 *   restart reverts to `default` alone), like a Redis configured without an aclfile.
 * - The server never outlives this Node process: one set of 'exit'/SIGINT/SIGTERM/SIGHUP handlers
 *   (child-process-guard.ts, installed only while servers run) SIGKILLs it at exit; on a signal the
 *   application also handles it gets SIGTERM first (graceful), otherwise SIGKILL and Node dies of the
 *   signal as usual. If this process dies without running handlers, the kernel SIGKILLs the server
 *   (prctl PDEATHSIG via `setpriv --pdeathsig`, when setpriv is installed).
 * - The child process is unref'ed: a running server alone does not keep Node alive.
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createClient } from 'redis';
import { signalChild, trackChild, withParentDeathSignal } from './child-process-guard';
import { freePort } from './free-port';

export interface RedisServer {
  /** `redis://default:<password>@127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Password of the `default` user (unrestricted: `~* &* +@all`). */
  readonly password: string;
  /** SIGTERM (Redis shuts down cleanly) and wait; SIGKILL after 10 s. No-op when not running. */
  stop(): Promise<void>;
  /** SIGKILL and wait: simulates a target that goes down. No-op when not running. */
  kill(): Promise<void>;
  /** Start again on the same port and directory and wait until PING answers. No-op when running. */
  start(): Promise<void>;
}

export interface StartRedisOptions {
  /** Directory name of this server under baseDir (letters, digits, `.`, `_`, `-`). */
  name: string;
  baseDir: string;
  /** Default: a free port. */
  port?: number;
  /** Keep ACL users in `<dir>/users.acl` (`ACL SAVE` works, users survive a restart). Default true. */
  aclFile?: boolean;
}

const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 10_000;
const READY_PROBE_INTERVAL_MS = 50;

// ---------------------------------------------------------------------------------------------
// Finding the binaries.

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function redisServerBinary(): string {
  const binary = onPath('redis-server');
  if (!binary) {
    throw new Error('startRedis: redis-server is not installed (Debian/Ubuntu: `apt-get install redis-server`)');
  }
  return binary;
}

// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readFrom(file: string, offset: number): string {
  try {
    return fs.readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

class BindError extends Error {}

class LocalRedisServer implements RedisServer {
  readonly url: string;
  private readonly logFile: string;
  private readonly aclFile: string | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private lastExit = '';

  constructor(
    readonly port: number,
    readonly password: string,
    private readonly dir: string,
    withAclFile: boolean,
  ) {
    this.url = `redis://default:${encodeURIComponent(password)}@127.0.0.1:${port}`;
    this.logFile = path.join(dir, 'redis.log');
    this.aclFile = withAclFile ? path.join(dir, 'users.acl') : undefined;
  }

  /** A fresh directory; the `default` user's password goes into the ACL file (hashed) or `requirepass`. */
  prepare(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (this.aclFile) {
      const hash = createHash('sha256').update(this.password).digest('hex');
      fs.writeFileSync(this.aclFile, `user default on #${hash} ~* &* +@all\n`, { mode: 0o600 });
    }
  }

  async start(): Promise<void> {
    if (this.child) return;
    const deadline = Date.now() + START_TIMEOUT_MS;
    const serverArgs = [
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--dir', this.dir,
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--logfile', '',
      ...(this.aclFile ? ['--aclfile', this.aclFile] : ['--requirepass', this.password]),
    ];
    const [command, args] = withParentDeathSignal(redisServerBinary(), serverArgs);

    const fd = fs.openSync(this.logFile, 'a');
    let offset: number;
    let child: ChildProcess;
    try {
      fs.writeSync(fd, `\n==== ${new Date().toISOString()} redis-server.ts: starting 127.0.0.1:${this.port} ====\n`);
      offset = fs.fstatSync(fd).size;
      // Output goes straight to the file: no pipe the server could block on, nothing lost.
      // Its own process group: a terminal's Ctrl-C reaches Node, which decides (see onSignal).
      child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    child.unref();
    trackChild(child);
    this.exited = new Promise<void>((resolve) => {
      const done = (description: string): void => {
        if (this.child === child) this.child = undefined;
        this.lastExit = description;
        resolve();
      };
      child.once('exit', (code, signalName) => done(`exit code ${code}, signal ${signalName}`));
      child.once('error', (error) => {
        if (child.pid === undefined) done(`spawn error: ${error.message}`);
      });
    });

    try {
      await this.waitReady(child, offset, deadline);
    } catch (error) {
      if (this.child === child) {
        signalChild(child, 'SIGKILL');
        await this.waitExit();
      }
      throw error;
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    signalChild(child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.waitExit().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) await this.kill();
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    signalChild(child, 'SIGKILL');
    await this.waitExit();
  }

  /** Ready when an authenticated PING answers: the port is bound and the ACL file is loaded. */
  private async waitReady(child: ChildProcess, offset: number, deadline: number): Promise<void> {
    let lastError = '';
    for (;;) {
      if (this.child !== child) throw this.failure(`exited before it was ready (${this.lastExit})`, offset);
      const client = createClient({
        url: this.url,
        disableClientInfo: true,
        socket: { connectTimeout: 1_000, reconnectStrategy: false },
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        if ((await client.ping()) === 'PONG') return;
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error);
      } finally {
        if (client.isOpen) client.destroy();
      }
      if (Date.now() > deadline) {
        throw this.failure(`no answer to PING within ${START_TIMEOUT_MS} ms (last error: ${lastError})`, offset);
      }
      await sleep(READY_PROBE_INTERVAL_MS);
    }
  }

  private failure(message: string, offset: number): Error {
    const log = readFrom(this.logFile, offset);
    const tail = log.split('\n').slice(-30).join('\n');
    const text = `redis-server 127.0.0.1:${this.port} (dir ${this.dir}): ${message}\n--- ${this.logFile} (tail) ---\n${tail}`;
    return /Address already in use/i.test(log) ? new BindError(text) : new Error(text);
  }

  /** The child is unref'ed; hold a reference while we wait for it so Node does not exit meanwhile. */
  private async waitExit(): Promise<void> {
    const child = this.child;
    child?.ref();
    try {
      await this.exited;
    } finally {
      child?.unref();
    }
  }
}

/**
 * Start a throwaway redis-server and resolve once an authenticated PING answers. With an
 * auto-picked port, a port taken by someone else in the meantime is retried with a new port.
 */
export async function startRedis(opts: StartRedisOptions): Promise<RedisServer> {
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name) || opts.name.startsWith('.')) {
    throw new Error(`startRedis: invalid name "${opts.name}"`);
  }
  redisServerBinary();
  const dir = path.join(path.resolve(opts.baseDir), opts.name);
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const server = new LocalRedisServer(port, randomBytes(18).toString('hex'), dir, opts.aclFile ?? true);
    server.prepare();
    try {
      await server.start();
      return server;
    } catch (error) {
      if (!(error instanceof BindError) || opts.port !== undefined || attempt >= 3) throw error;
    }
  }
}
