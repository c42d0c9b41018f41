import { eventually } from '@test/support/eventually';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sign } from 'jsonwebtoken';
import { Client as LdapClient } from 'ldapts';
import { Client as PgClient } from 'pg';
import { createClient } from 'redis';
import { trackChild } from '../../deploy/lib/child-process-guard';
import { freePort } from '../../deploy/lib/free-port';

const root = resolve(__dirname, '..', '..');

/** Whether any process of the process group `pgid` still exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolveProbe) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolveProbe(true);
    });
    socket.once('error', () => resolveProbe(false));
  });
}
const STARTED = 'Portcullis is running.';

interface StackFile {
  apiUrl: string;
  jwt: { secret: string; issuer: string; audience: string };
  targets: {
    'stock-db': string;
    'crm-db': string;
    'staff-directory': { url: string; baseDn: string } | null;
    'session-cache': string | null;
  };
}

/**
 * `npm start`, the README's first command, run as a user runs it — build included — on ports and a
 * directory of its own: the whole stack comes up with its demo data and its services on Kafka over TLS; the
 * README's walk-through works on the real demo targets (a clerk's PostgreSQL login, LDAP bind and Redis
 * login are refused while their groups are revoked, a system in two groups stays revoked until both are
 * restored, and each restore waits for a second lead's approval); the audit trail verifies; and Ctrl-C
 * stops everything. Nothing else in the suite starts this script.
 */
describe('npm start: the local stack with demo data', () => {
  let stack: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  let output = '';
  let dir: string;
  let ports: { api: number; kafka: number; kafkaSasl: number; kafkaTls: number; kafkaController: number };
  let file: StackFile;

  const tail = () => output.split('\n').slice(-40).join('\n');
  const token = (sub: string, roles: string[]) =>
    sign({ roles }, file.jwt.secret, { subject: sub, issuer: file.jwt.issuer, audience: file.jwt.audience, expiresIn: '10m' });

  async function api<T = Record<string, unknown>>(method: string, path: string, bearer: string, body?: object): Promise<{ status: number; body: T }> {
    const response = await fetch(`${file.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: (await response.json()) as T };
  }

  type CommandSystem = { systemId: string; status: string; desiredState: string; changed: boolean; detail: string | null };

  async function enforcedEverywhere(commandId: string, auditor: string): Promise<CommandSystem[]> {
    return eventually(async () => {
      const { body } = await api<{ status: string; systems: CommandSystem[] }>('GET', `/commands/${commandId}`, auditor);
      if (body.status !== 'enforced') throw new Error(`command ${commandId} is ${body.status}: ${JSON.stringify(body.systems)}`);
      return body.systems;
    }, 60_000, 250);
  }

  /** Logs in to a demo PostgreSQL target as `user`; resolves to the refusal's message, or 'ok'. */
  async function pgLogin(url: string, user: string, password: string): Promise<string> {
    const target = new URL(url);
    target.username = user;
    target.password = password;
    const client = new PgClient({ connectionString: target.toString() });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return 'ok';
    } catch (error) {
      return (error as Error).message;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async function ldapBind(uid: string, password: string): Promise<string> {
    const directory = file.targets['staff-directory']!;
    const client = new LdapClient({ url: directory.url });
    try {
      await client.bind(`uid=${uid},ou=people,${directory.baseDn}`, password);
      return 'ok';
    } catch (error) {
      // 49: invalidCredentials (what a locked account answers)
      return `LDAP result ${(error as { code?: number }).code}: ${(error as Error).message}`;
    } finally {
      await client.unbind().catch(() => undefined);
    }
  }

  async function redisLogin(user: string, password: string): Promise<string> {
    const target = new URL(file.targets['session-cache']!);
    target.username = user;
    target.password = password;
    const client = createClient({ url: target.toString(), socket: { reconnectStrategy: false } });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return 'ok';
    } catch (error) {
      return (error as Error).message;
    } finally {
      if (client.isOpen) await client.quit().catch(() => undefined);
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-stack-spec-'));
    ports = { api: await freePort(), kafka: await freePort(), kafkaSasl: await freePort(), kafkaTls: await freePort(), kafkaController: await freePort() };
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORTCULLIS_STACK_DIR: dir,
      PORT: String(ports.api),
      KAFKA_PORT: String(ports.kafka),
      KAFKA_SASL_PORT: String(ports.kafkaSasl),
      KAFKA_TLS_PORT: String(ports.kafkaTls),
      KAFKA_CONTROLLER_PORT: String(ports.kafkaController),
    };
    delete env.DATABASE_URL; // a fresh machine: the stack starts its own policy database
    // Its own process group, as a terminal would start it, so that "Ctrl-C" below reaches all of it.
    stack = spawn('npm', ['start'], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    // Should this process go away before afterAll (Jest interrupted, the runner's watchdog), the stack goes too.
    trackChild(stack, (child, signal) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        /* gone */
      }
    });
    stack.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    stack.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const child = stack;
    exited = new Promise((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    await new Promise<void>((resolveStart, rejectStart) => {
      const timer = setTimeout(() => rejectStart(new Error(`npm start did not print "${STARTED}" within 240 s:\n${tail()}`)), 240_000);
      const check = setInterval(() => {
        if (!output.includes(STARTED)) return;
        clearInterval(check);
        clearTimeout(timer);
        resolveStart();
      }, 100);
      void exited!.then((code) => {
        clearInterval(check);
        clearTimeout(timer);
        rejectStart(new Error(`npm start exited (${code}) before it was ready:\n${tail()}`));
      });
    });
    file = JSON.parse(readFileSync(join(dir, 'stack.json'), 'utf8')) as StackFile;
  }, 300_000);

  afterAll(async () => {
    if (stack?.pid !== undefined && groupAlive(stack.pid)) {
      // Only if a test failed before "Ctrl-C": stop it as Ctrl-C does, and only then the hard way.
      const pid = stack.pid;
      process.kill(-pid, 'SIGINT');
      await eventually(() => {
        if (groupAlive(pid)) throw new Error('still stopping');
      }, 30_000, 200).catch(() => process.kill(-pid, 'SIGKILL'));
      await eventually(() => {
        if (groupAlive(pid)) throw new Error('the stack survived SIGKILL');
      }, 30_000, 200);
    }
    stack?.stdout?.destroy();
    stack?.stderr?.destroy();
    if (file) {
      // The servers it started run in process groups of their own: wait until they are gone before removing their files.
      await eventually(async () => {
        for (const port of targetPorts()) if (await listening(port)) throw new Error(`127.0.0.1:${port} still listening`);
      }, 30_000, 200).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  /** The ports of the demo targets and of Kafka's listeners. */
  const targetPorts = () => [
    ...[file.targets['stock-db'], file.targets['crm-db'], file.targets['staff-directory']!.url, file.targets['session-cache']!].map((url) =>
      Number(new URL(url).port),
    ),
    ports.kafka,
    ports.kafkaSasl,
    ports.kafkaTls,
  ];

  it('starts every demo target, its adapter, and the demo groups (nothing skipped); the services use Kafka over TLS', async () => {
    expect(output).not.toContain('skipping the');
    expect(output).toContain(`127.0.0.1:${ports.kafkaTls}  (TLS, CA `);
    expect(file.apiUrl).toBe(`http://127.0.0.1:${ports.api}/api/v1`);
    const auditor = token('audrey', ['auditor']);
    const adapters = await eventually(async () => {
      const { body } = await api<{ id: string; status: string }[]>('GET', '/adapters', auditor);
      const online = body.filter((adapter) => adapter.status === 'online').map((adapter) => adapter.id).sort();
      if (online.length < 3) throw new Error(`adapters online: ${JSON.stringify(body)}`);
      return online;
    }, 60_000, 250);
    expect(adapters).toEqual(['ldap-demo', 'pg-demo', 'redis-demo']);
    const { status, body } = await api<{ systems: { id: string }[] }>('GET', '/groups/back-office', auditor);
    expect(status).toBe(200);
    expect(body.systems.map((system) => system.id).sort()).toEqual(['crm-db', 'staff-directory', 'stock-db']);
    expect(await pgLogin(file.targets['stock-db'], 'clerk_anna', 'anna')).toBe('ok');
    expect(await ldapBind('anna', 'anna')).toBe('ok');
    expect(await redisLogin('agent_anna', 'agent_anna')).toBe('ok');
  });

  it('revokes the back office and the call centre on the real targets, break-glass accounts exempt', async () => {
    const lead = token('alice', ['security-lead']);
    const auditor = token('audrey', ['auditor']);
    const reason = { reason: 'Back-office credentials phished', incidentRef: 'INC-2041' };
    const backOffice = await api<{ commandId: string }>('POST', '/groups/back-office/revoke', lead, reason);
    const callCentre = await api<{ commandId: string }>('POST', '/groups/call-centre/revoke', lead, reason);
    expect([backOffice.status, callCentre.status]).toEqual([202, 202]);
    expect((await enforcedEverywhere(backOffice.body.commandId, auditor)).map((system) => system.systemId).sort()).toEqual([
      'crm-db',
      'staff-directory',
      'stock-db',
    ]);
    await enforcedEverywhere(callCentre.body.commandId, auditor);

    expect(await pgLogin(file.targets['stock-db'], 'clerk_anna', 'anna')).toMatch(/not permitted to log in/);
    expect(await pgLogin(file.targets['crm-db'], 'clerk_anna', 'anna')).toMatch(/not permitted to log in/);
    expect(await pgLogin(file.targets['stock-db'], 'breakglass_dba', 'breakglass')).toBe('ok');
    expect(await ldapBind('anna', 'anna')).toMatch(/^LDAP result 49:/);
    expect(await ldapBind('breakglass', 'breakglass')).toBe('ok');
    expect(await redisLogin('agent_anna', 'agent_anna')).toMatch(/WRONGPASS/);
    expect(await redisLogin('breakglass', 'breakglass')).toBe('ok');
  });

  it('restores the back office only after a second lead approves, and the clerk logs in again', async () => {
    const alice = token('alice', ['security-lead']);
    const bob = token('bob', ['security-lead']);
    const auditor = token('audrey', ['auditor']);
    const request = await api<{ commandId: string; status: string }>('POST', '/groups/back-office/restore', alice, { reason: 'Credentials rotated' });
    expect(request.status).toBe(202);
    expect(request.body.status).toBe('awaiting-approval');
    const own = await api<{ error: string }>('POST', `/commands/${request.body.commandId}/approve`, alice, { comment: 'mine' });
    expect(own.status).toBe(403);
    expect(await pgLogin(file.targets['stock-db'], 'clerk_anna', 'anna')).toMatch(/not permitted to log in/);

    const approval = await api('POST', `/commands/${request.body.commandId}/approve`, bob, { comment: 'checked the rotation' });
    expect(approval.status).toBe(200);
    const systems = await enforcedEverywhere(request.body.commandId, auditor);
    expect(await pgLogin(file.targets['stock-db'], 'clerk_anna', 'anna')).toBe('ok');
    expect(await ldapBind('anna', 'anna')).toBe('ok');
    // crm-db is also in the call centre, which stays revoked: restoring the back office does not open it.
    expect(systems.find((system) => system.systemId === 'crm-db')).toEqual(
      expect.objectContaining({ desiredState: 'revoked', changed: false, detail: expect.stringContaining('call-centre') }),
    );
    expect(await pgLogin(file.targets['crm-db'], 'clerk_anna', 'anna')).toMatch(/not permitted to log in/);
    expect(await redisLogin('agent_anna', 'agent_anna')).toMatch(/WRONGPASS/);
  });

  it('gives the call centre back after its own four-eyes restore: crm-db and the Redis login return', async () => {
    const request = await api<{ commandId: string }>('POST', '/groups/call-centre/restore', token('alice', ['security-lead']), { reason: 'Call centre cleaned' });
    expect(request.status).toBe(202);
    expect(await redisLogin('agent_anna', 'agent_anna')).toMatch(/WRONGPASS/);
    const approval = await api('POST', `/commands/${request.body.commandId}/approve`, token('bob', ['security-lead']), { comment: 'checked' });
    expect(approval.status).toBe(200);
    await enforcedEverywhere(request.body.commandId, token('audrey', ['auditor']));
    expect(await pgLogin(file.targets['crm-db'], 'clerk_anna', 'anna')).toBe('ok');
    expect(await redisLogin('agent_anna', 'agent_anna')).toBe('ok');
  });

  it('keeps an intact audit trail of who did what and why', async () => {
    const auditor = token('audrey', ['auditor']);
    const verify = await api<{ intact: boolean; breaks: number; entries: number }>('GET', '/audit/verify', auditor);
    expect(verify.status).toBe(200);
    expect(verify.body).toEqual(expect.objectContaining({ intact: true, breaks: 0 }));
    const trail = await api<{ items: { action: string; actor: string }[] }>('GET', '/audit?groupId=back-office', auditor);
    expect(trail.status).toBe(200);
    const actions = trail.body.items.map((entry) => `${entry.action} by ${entry.actor}`);
    expect(actions).toEqual(expect.arrayContaining(['group.revoked by user:alice', 'group.restored by user:bob']));
  });

  it('never wipes a PORTCULLIS_STACK_DIR it did not make', async () => {
    const foreign = mkdtempSync(join(tmpdir(), 'portcullis-not-a-stack-'));
    writeFileSync(join(foreign, 'precious.txt'), 'keep me');
    try {
      const result = spawnSync(join(root, 'node_modules', '.bin', 'tsx'), ['deploy/local-stack.ts', '--no-build'], {
        cwd: root,
        env: { ...process.env, PORTCULLIS_STACK_DIR: foreign, PORT: '0' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain('is not empty and was not made by npm start');
      expect(readdirSync(foreign)).toEqual(['precious.txt']);
    } finally {
      rmSync(foreign, { recursive: true, force: true });
    }
  });

  it('stops everything on Ctrl-C', async () => {
    // The whole group, as a terminal's Ctrl-C: npm may be gone before the script has stopped what it started.
    process.kill(-stack!.pid!, 'SIGINT');
    await eventually(() => {
      if (groupAlive(stack!.pid!)) throw new Error(`still running after Ctrl-C:\n${tail()}`);
    }, 60_000, 200);
    expect(output).toContain('[stack] stopping ...');
    expect(output).not.toContain('stop failed');
    expect(output).not.toMatch(/exited \((?:\d+|SIG\w+)\); see/); // no service died on its own
    // Nothing it started still listens: the API, the broker, the demo targets.
    for (const port of [ports.api, ...targetPorts()]) {
      expect({ port, listening: await listening(port) }).toEqual({ port, listening: false });
    }
  }, 90_000);
});
