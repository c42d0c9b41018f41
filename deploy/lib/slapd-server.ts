/**
 * Test/local-stack harness for a throwaway OpenLDAP server: the Debian `slapd` (2.5) binary run in the
 * foreground as a child of this process, on 127.0.0.1 and a free port, with the ppolicy overlay.
 *
 *   const ldap = await startSlapd({ name: 'ldap', baseDir: workDir });
 *   ldap.url       // ldap://127.0.0.1:<port>
 *   ldap.baseDn    // the suffix, e.g. dc=portcullis,dc=test; holds ou=people and ou=policies
 *   ldap.bindDn    // cn=admin,<baseDn>: the root DN, with a random bindPassword
 *   await ldap.stop();   // SIGTERM, SIGKILL after 10 s; then its directory is deleted
 *
 * - Each call writes a fresh `slapd.conf` in `<baseDir>/<name>/` (deleted first if left over) and
 *   converts it with `slaptest` into `<baseDir>/<name>/slapd.d`; the server logs to
 *   `<baseDir>/<name>.slapd.log`, which stop() keeps.
 * - Schemas core, cosine, inetorgperson and nis; one `mdb` database for the suffix with the ppolicy
 *   overlay (`ppolicy_use_lockout`) and a default policy `cn=default,ou=policies,<suffix>`
 *   (pwdLockout after 5 failures for 300 s). Adding `pwdAccountLockedTime: 000001010000Z` to an
 *   entry locks it until an administrator deletes the attribute; its binds fail with 49.
 * - The root DN also manages `cn=config`, so tests can change ACLs (`olcAccess`) at run time.
 * - The server never outlives this Node process: one set of 'exit'/SIGINT/SIGTERM/SIGHUP handlers
 *   (child-process-guard.ts, installed only while servers run) SIGKILLs it at exit; on a signal the
 *   application also handles it gets SIGTERM first (graceful), otherwise SIGKILL and Node dies of the
 *   signal as usual. If this process dies without running handlers, the kernel SIGKILLs the server
 *   (prctl PDEATHSIG via `setpriv --pdeathsig`, when setpriv is installed).
 * - The child process is unref'ed: a running server alone does not keep Node alive.
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'ldapts';
import { signalChild, trackChild, withParentDeathSignal } from './child-process-guard';
import { freePort } from './free-port';

export interface SlapdServer {
  /** `ldap://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The suffix of the directory; `ou=people,<baseDn>` and `ou=policies,<baseDn>` exist. */
  readonly baseDn: string;
  /** The root DN (`cn=admin,<baseDn>`): unrestricted on the data and on `cn=config`. */
  readonly bindDn: string;
  readonly bindPassword: string;
  /** SIGTERM and wait, SIGKILL after 10 s; then the data and config are deleted. Idempotent. */
  stop(): Promise<void>;
}

export interface StartSlapdOptions {
  /** Directory name of this server under baseDir (letters, digits, `.`, `_`, `-`). */
  name: string;
  baseDir: string;
  /** Default: a free port. */
  port?: number;
  /** Default `dc=portcullis,dc=test`. Plain `dc=`, `o=` or `ou=` components, no escapes. */
  suffix?: string;
}

const SLAPD = '/usr/sbin/slapd';
const SLAPTEST = '/usr/sbin/slaptest';
const SCHEMA_DIR = '/etc/ldap/schema';
const MODULE_DIR = '/usr/lib/ldap';
const SCHEMAS = ['core', 'cosine', 'inetorgperson', 'nis'];
const DEFAULT_SUFFIX = 'dc=portcullis,dc=test';
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 10_000;
const READY_PROBE_INTERVAL_MS = 50;

// ---------------------------------------------------------------------------------------------
// Checking the installation.

function requireInstalled(): void {
  const missing = [SLAPD, SLAPTEST, path.join(SCHEMA_DIR, 'core.schema'), path.join(MODULE_DIR, 'ppolicy.la')].filter(
    (file) => !fs.existsSync(file),
  );
  if (missing.length > 0) {
    throw new Error(
      `startSlapd: OpenLDAP is not installed (missing ${missing.join(', ')}). ` +
        'Debian/Ubuntu: `DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils`',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The configuration and the initial entries.

interface SlapdLayout {
  dir: string;
  configFile: string;
  configDir: string;
  dataDir: string;
  pidFile: string;
  logFile: string;
}

function layout(baseDir: string, name: string): SlapdLayout {
  const dir = path.join(baseDir, name);
  return {
    dir,
    configFile: path.join(dir, 'slapd.conf'),
    configDir: path.join(dir, 'slapd.d'),
    dataDir: path.join(dir, 'data'),
    pidFile: path.join(dir, 'slapd.pid'),
    logFile: path.join(baseDir, `${name}.slapd.log`),
  };
}

function slapdConf(files: SlapdLayout, suffix: string, rootDn: string, rootPassword: string): string {
  return [
    ...SCHEMAS.map((schema) => `include ${path.join(SCHEMA_DIR, `${schema}.schema`)}`),
    `pidfile ${files.pidFile}`,
    `argsfile ${path.join(files.dir, 'slapd.args')}`,
    `modulepath ${MODULE_DIR}`,
    'moduleload back_mdb',
    'moduleload ppolicy',
    '',
    'database config',
    `access to * by dn.exact="${rootDn}" manage by * none`,
    '',
    'database mdb',
    'maxsize 104857600',
    `suffix "${suffix}"`,
    `rootdn "${rootDn}"`,
    `rootpw ${rootPassword}`,
    `directory ${files.dataDir}`,
    'index objectClass,uid eq',
    'overlay ppolicy',
    `ppolicy_default "cn=default,ou=policies,${suffix}"`,
    'ppolicy_use_lockout',
    '',
  ].join('\n');
}

/** The entry of the suffix itself, by the type of its first component. */
function suffixEntry(suffix: string): Record<string, string[]> {
  const [, type, value] = /^(dc|o|ou)=([^,]+)/.exec(suffix) ?? [];
  switch (type) {
    case 'dc':
      return { objectClass: ['dcObject', 'organization'], dc: [value], o: [value] };
    case 'o':
      return { objectClass: ['organization'], o: [value] };
    default:
      return { objectClass: ['organizationalUnit'], ou: [value] };
  }
}

async function addInitialEntries(client: Client, suffix: string): Promise<void> {
  await client.add(suffix, suffixEntry(suffix));
  await client.add(`ou=people,${suffix}`, { objectClass: 'organizationalUnit', ou: 'people' });
  await client.add(`ou=policies,${suffix}`, { objectClass: 'organizationalUnit', ou: 'policies' });
  await client.add(`cn=default,ou=policies,${suffix}`, {
    objectClass: ['device', 'pwdPolicy'],
    cn: 'default',
    pwdAttribute: 'userPassword',
    pwdLockout: 'TRUE',
    pwdMaxFailure: '5',
    pwdLockoutDuration: '300',
  });
}

/**
 * A fresh directory with slapd.conf converted into slapd.d. slaptest writes slapd.d once slapd.conf
 * parsed, then tries to open the (not yet created) database read-only and exits 1: the conversion is
 * judged by its result, not by the exit status.
 */
async function writeConfig(files: SlapdLayout, suffix: string, rootDn: string, rootPassword: string): Promise<void> {
  fs.rmSync(files.dir, { recursive: true, force: true });
  fs.mkdirSync(files.configDir, { recursive: true });
  fs.mkdirSync(files.dataDir);
  fs.writeFileSync(files.configFile, slapdConf(files, suffix, rootDn, rootPassword), { mode: 0o600 });
  await new Promise<void>((resolve, reject) => {
    execFile(SLAPTEST, ['-f', files.configFile, '-F', files.configDir], (_error, stdout, stderr) => {
      if (fs.existsSync(path.join(files.configDir, 'cn=config.ldif'))) resolve();
      else reject(new Error(`startSlapd: slaptest could not convert ${files.configFile}:\n${stdout}${stderr}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The process.

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readFrom(file: string, offset: number): string {
  try {
    return fs.readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

class PortTakenError extends Error {}

/** `slapd -d none` stays in the foreground (no fork), so the child's pid is the server's. */
function spawnSlapd(files: SlapdLayout, url: string): { child: ChildProcess; logOffset: number } {
  const asRoot = process.getuid?.() === 0 ? ['-u', 'root', '-g', 'root'] : [];
  const slapdArgs = ['-h', `${url}/`, '-F', files.configDir, ...asRoot, '-d', 'none'];
  const [command, args] = withParentDeathSignal(SLAPD, slapdArgs);
  const fd = fs.openSync(files.logFile, 'a');
  try {
    fs.writeSync(fd, `==== ${new Date().toISOString()} slapd-server.ts: starting ${url} ====\n`);
    const logOffset = fs.fstatSync(fd).size;
    // Output goes straight to the file: no pipe the server could block on.
    const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
    child.unref();
    return { child, logOffset };
  } finally {
    fs.closeSync(fd);
  }
}

class LocalSlapdServer implements SlapdServer {
  readonly url: string;
  private readonly exited: Promise<void>;
  private running = true;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly child: ChildProcess,
    private readonly files: SlapdLayout,
    private readonly logOffset: number,
    readonly port: number,
    readonly baseDn: string,
    readonly bindDn: string,
    readonly bindPassword: string,
  ) {
    this.url = `ldap://127.0.0.1:${port}`;
    trackChild(child);
    this.exited = new Promise<void>((resolve) => {
      const done = () => {
        this.running = false;
        resolve();
      };
      child.once('exit', done);
      child.once('error', () => {
        if (child.pid === undefined) done();
      });
    });
  }

  /** Waits until slapd answers binds, then adds the suffix entry, `ou=people`, `ou=policies` and the default policy. */
  async initialise(): Promise<void> {
    const client = await this.bound();
    try {
      await addInitialEntries(client, this.baseDn);
    } catch (error) {
      throw this.failure(`could not add the initial entries: ${describe(error)}`);
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.terminate().finally(() => fs.rmSync(this.files.dir, { recursive: true, force: true }));
    return this.stopping;
  }

  private async terminate(): Promise<void> {
    if (!this.running) return;
    signalChild(this.child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.waitExit().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      signalChild(this.child, 'SIGKILL');
      await this.waitExit();
    }
  }

  /** Resolves with a client bound as the root DN once slapd answers; fails when it exits or the time is up. */
  private async bound(): Promise<Client> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (!this.running) throw this.failure('exited before it answered a bind');
      const client = new Client({ url: this.url, connectTimeout: 1_000, timeout: 5_000 });
      try {
        await client.bind(this.bindDn, this.bindPassword);
        return client;
      } catch (error) {
        await client.unbind().catch(() => undefined);
        if (Date.now() > deadline) {
          throw this.failure(`no bind answered within ${START_TIMEOUT_MS} ms (last error: ${describe(error)})`);
        }
      }
      await sleep(READY_PROBE_INTERVAL_MS);
    }
  }

  /** The child is unref'ed; hold a reference while waiting so that Node does not exit meanwhile. */
  private async waitExit(): Promise<void> {
    this.child.ref();
    try {
      await this.exited;
    } finally {
      this.child.unref();
    }
  }

  private failure(message: string): Error {
    const log = readFrom(this.files.logFile, this.logOffset);
    const tail = log.split('\n').slice(-30).join('\n');
    const text = `slapd ${this.url} (${this.files.dir}): ${message}\n--- ${this.files.logFile} (tail) ---\n${tail}`;
    return /Address already in use/.test(log) ? new PortTakenError(text) : new Error(text);
  }
}

/**
 * Starts a throwaway slapd and resolves once it answers binds and holds the initial entries. With an
 * auto-picked port, a port taken by someone else in the meantime is retried with a new one.
 */
export async function startSlapd(opts: StartSlapdOptions): Promise<SlapdServer> {
  if (!/^[A-Za-z0-9._-]+$/.test(opts.name) || opts.name.startsWith('.')) {
    throw new Error(`startSlapd: invalid name "${opts.name}"`);
  }
  const suffix = opts.suffix ?? DEFAULT_SUFFIX;
  if (!/^(dc|o|ou)=[A-Za-z0-9-]+(,(dc|o|ou)=[A-Za-z0-9-]+)*$/.test(suffix)) {
    throw new Error(`startSlapd: unsupported suffix "${suffix}" (plain dc=/o=/ou= components, e.g. ${DEFAULT_SUFFIX})`);
  }
  requireInstalled();
  const files = layout(path.resolve(opts.baseDir), opts.name);
  const bindDn = `cn=admin,${suffix}`;
  const bindPassword = randomBytes(18).toString('hex');

  for (let attempt = 1; ; attempt++) {
    await writeConfig(files, suffix, bindDn, bindPassword);
    const port = opts.port ?? (await freePort());
    const { child, logOffset } = spawnSlapd(files, `ldap://127.0.0.1:${port}`);
    const server = new LocalSlapdServer(child, files, logOffset, port, suffix, bindDn, bindPassword);
    try {
      await server.initialise();
      return server;
    } catch (error) {
      await server.stop();
      const retry = error instanceof PortTakenError && opts.port === undefined && attempt < 3;
      if (!retry) throw error;
    }
  }
}
