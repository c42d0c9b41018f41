import { randomBytes, randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { readTestEnv, testServers } from '@test/support/test-env';
import { RedisAclEnforcer } from '../src/redis-acl.enforcer';
import { ADAPTER_USER_PERMISSIONS } from '../src/redis-failure';
import { RedisSystemConfigSchema, type RedisSystemConfig } from '../src/redis-system.config';

/*
 * What only Redis has: `default` and the adapter's own user, connections per user, names that are ACL
 * rules, the aclfile across a restart of the server, and the adapter's permissions and credentials. What
 * every enforcer must do (revoke and restore exactly, exempt principals, users that were off, sessions,
 * repeats, outages, drift, crashes, hostile names) is checked by the shared conformance suite in
 * redis.conformance.int-spec.ts.
 *
 * A revoke switches off every ACL user of the server that is not exempt, not the adapter's own and not
 * `default`. The server is shared with the conformance spec, one spec after the other: both delete the
 * users they created, so the detail assertions here see only this spec's users. Every user here carries
 * a tag unique to this run (names that are rules aside, which are deleted right after), and every test
 * ends with a restore and the deletion of its users.
 */
const env = readTestEnv();
const servers = testServers(env);
const adminUrl = env.redis.url;
const { hostname: host, port } = new URL(adminUrl);
const TAG = `pc_${randomBytes(3).toString('hex')}_`;
const PASSWORD = randomBytes(12).toString('hex');
const ADAPTER_USER = `${TAG}adapter`;
const APP_PERMISSIONS: readonly string[] = ['~app:*', '+get', '+set', '+ping'];
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';
/** The server's `default` user is the administrator's and stays on: every detail says so. */
const DEFAULT_STAYS_ON = 'residual access: the default user stays on (includeDefaultUser is false)';
const ignore = (): void => undefined;

type Connection = ReturnType<typeof createClient>;

function systemAs(user: string, password = PASSWORD): RedisSystemConfig {
  return RedisSystemConfigSchema.parse({ url: `redis://${encodeURIComponent(user)}:${password}@${host}:${port}` });
}

describe('RedisAclEnforcer against Redis', () => {
  const admin = createClient({ url: adminUrl, disableClientInfo: true });
  const createdUsers = new Set<string>();
  const openConnections: Connection[] = [];
  const system = systemAs(ADAPTER_USER);
  let journal: InMemoryEnforcementJournal;
  let enforcer: RedisAclEnforcer;

  function context(overrides: Partial<EnforcementContext<RedisSystemConfig>> = {}): EnforcementContext<RedisSystemConfig> {
    return {
      systemId: 'session-cache',
      system,
      exemptPrincipals: [],
      journal,
      commandId: randomUUID(),
      generation: 1,
      logger: new JsonLogger({ write: ignore }),
      ...overrides,
    };
  }

  async function createUser(name: string, rules: readonly string[] = APP_PERMISSIONS): Promise<string> {
    createdUsers.add(name);
    await admin.sendCommand(['ACL', 'SETUSER', name, 'reset', 'on', `>${PASSWORD}`, ...rules]);
    return name;
  }

  function connection(credentials: { username?: string; password?: string } = {}): Connection {
    const client = createClient({
      socket: { host, port: Number(port), reconnectStrategy: false, connectTimeout: 5_000 },
      disableClientInfo: true,
      ...credentials,
    });
    client.on('error', ignore); // a killed connection must not crash the test process
    openConnections.push(client);
    return client;
  }

  async function openSession(user: string): Promise<Connection> {
    const client = connection({ username: user, password: PASSWORD });
    await client.connect();
    return client;
  }

  /** The answer to an explicit `AUTH <user> <password>` on a fresh connection: `OK` or the error. */
  async function authAnswer(user: string, password = PASSWORD): Promise<string> {
    const client = connection();
    await client.connect();
    try {
      return String(await client.sendCommand(['AUTH', user, password]));
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      client.destroy();
    }
  }

  /** The user's flags as `ACL GETUSER` reports them; undefined for a missing user. */
  async function flags(user: string): Promise<string[] | undefined> {
    const reply = (await admin.sendCommand(['ACL', 'GETUSER', user])) as unknown[] | null;
    return reply ? (reply[reply.indexOf('flags') + 1] as string[]) : undefined;
  }

  async function aclUserCount(): Promise<number> {
    return ((await admin.sendCommand(['ACL', 'LIST'])) as string[]).length;
  }

  /** SIGKILL and start again: what is not in the aclfile is lost. */
  async function restartServer(): Promise<void> {
    await servers.redis.kill();
    await servers.redis.start();
  }

  beforeAll(async () => {
    admin.on('error', ignore); // it reconnects after the server's restart
    await admin.connect();
    await admin.sendCommand(['ACL', 'SETUSER', ADAPTER_USER, 'reset', 'on', `>${PASSWORD}`, ...ADAPTER_USER_PERMISSIONS.split(' ')]);
  });

  beforeEach(() => {
    journal = new InMemoryEnforcementJournal();
    enforcer = new RedisAclEnforcer();
  });

  afterEach(async () => {
    // Whatever happened in the test: switch back on what is owed, as `default` (the adapter's user may be off).
    if (journal.value !== undefined) await enforcer.restore(context({ system: systemAs('default', new URL(adminUrl).password) }));
    for (const client of openConnections.splice(0)) if (client.isOpen) client.destroy();
    for (const user of createdUsers) await admin.sendCommand(['ACL', 'DELUSER', user]);
    createdUsers.clear();
  });

  afterAll(async () => {
    await admin.sendCommand(['ACL', 'DELUSER', ADAPTER_USER]);
    // The enforcer's ACL SAVE wrote this spec's users to the aclfile: a later restart must not bring them back.
    await admin.sendCommand(['ACL', 'SAVE']);
    admin.destroy();
  });

  it('leaves `default` and its own user on and says so, closes every connection of a user, and restores with passwords and permissions unchanged', async () => {
    const clerk = await createUser(`${TAG}clerk`);
    const app = await createUser(`${TAG}app`);
    const clerkBefore = await admin.sendCommand(['ACL', 'GETUSER', clerk]);
    await openSession(clerk);
    await Promise.all([openSession(app), openSession(app)]);

    const revoked = await enforcer.revoke(context());

    expect(revoked).toEqual({
      outcome: 'applied',
      detail: `switched off 2 ACL users (${app}, ${clerk}); 3 connections closed; ${DEFAULT_STAYS_ON}; saved to the aclfile (ACL SAVE)`,
      principalsChanged: 2,
      sessionsTerminated: 3,
    });
    expect(await authAnswer(ADAPTER_USER)).toBe('OK');
    expect(await flags('default')).toContain('on');
    expect(await admin.ping()).toBe('PONG'); // a connection of `default`, not closed
    expect(await enforcer.inspect(context())).toEqual({ state: 'revoked', detail: `no managed ACL user is on; ${DEFAULT_STAYS_ON}` });
    // With includeDefaultUser, `default` is managed: still on, so access is active.
    expect(await enforcer.inspect(context({ system: { ...system, includeDefaultUser: true } }))).toEqual({
      state: 'active',
      detail: '1 ACL user on: default',
      principals: ['default'],
    });

    const restored = await enforcer.restore(context({ generation: 2 }));

    expect(restored).toEqual({
      outcome: 'applied',
      detail: `switched 2 ACL users back on (${app}, ${clerk}); saved to the aclfile (ACL SAVE)`,
      principalsChanged: 2,
    });
    // Same flags, password hashes, keys, channels and commands as before the revoke.
    expect(await admin.sendCommand(['ACL', 'GETUSER', clerk])).toEqual(clerkBefore);
    const clerkAgain = await openSession(clerk);
    expect(await clerkAgain.sendCommand(['SET', 'app:order', '1'])).toBe('OK');
    await expect(clerkAgain.sendCommand(['GET', 'billing:order'])).rejects.toThrow(/^NOPERM/);
  });

  it('handles user names that are ACL rules, or start like one, as names, never as rules', async () => {
    const countBefore = await aclUserCount();
    // The conformance suite's names carry a prefix, so none of them is a rule; these are, or start like
    // one. Names cannot contain whitespace (Redis refuses them).
    const hostile = [
      await createUser(''),
      await createUser('reset'),
      await createUser('nopass'),
      await createUser('on'),
      await createUser(`>${TAG}`),
      await createUser(`<${TAG}`),
      await createUser(`~${TAG}*`),
      await createUser(`+@all${TAG}`),
      await createUser(`(${TAG}`),
    ];
    const sessions = await Promise.all(hostile.filter((user) => user !== '').map(openSession));

    const revoked = await enforcer.revoke(context());

    expect(revoked).toMatchObject({ outcome: 'applied', principalsChanged: hostile.length, sessionsTerminated: sessions.length });
    expect(await Promise.all(hostile.map((user) => authAnswer(user)))).toEqual(hostile.map(() => WRONGPASS));

    expect((await enforcer.restore(context({ generation: 2 }))).outcome).toBe('applied');
    // Each user kept its password: `reset` and `nopass` were never taken for rules.
    expect(await Promise.all(hostile.map((user) => authAnswer(user)))).toEqual(hostile.map(() => 'OK'));
    expect(await authAnswer('nopass', 'any password')).toBe(WRONGPASS);
    expect(await aclUserCount()).toBe(countBefore + hostile.length);
  });

  it('a revoke and a restore each survive a restart of the server: both are saved to the aclfile', async () => {
    const clerk = await createUser(`${TAG}clerk`);

    expect(await enforcer.revoke(context())).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    await restartServer();

    // Still there (it was never saved before the revoke), and off.
    expect(await flags(clerk)).toContain('off');
    expect(await authAnswer(clerk)).toBe(WRONGPASS);
    expect(await enforcer.inspect(context())).toMatchObject({ state: 'revoked' });

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    await restartServer();

    expect(await flags(clerk)).toContain('on');
    expect(await authAnswer(clerk)).toBe('OK');
  });

  it('needs exactly the documented permissions: without +client|kill the revoke is permanent and says what it did', async () => {
    const restricted = ADAPTER_USER_PERMISSIONS.split(' ').filter((rule) => rule !== '+client|kill');
    const weakAdapter = await createUser(`${TAG}weak-adapter`, restricted);
    const clerk = await createUser(`${TAG}clerk`);
    const weak = { system: systemAs(weakAdapter) };

    const revoked = await enforcer.revoke(context(weak));

    expect(revoked.outcome).toBe('failed-permanent');
    expect(revoked.detail).toMatch(/^NOPERM .*'client\|kill'.*: the adapter's user needs exactly .*\+client\|kill; switched off \d+ ACL users \(/);
    expect(revoked.detail).toContain(clerk);
    expect(await authAnswer(clerk)).toBe(WRONGPASS);

    expect(await enforcer.restore(context({ ...weak, generation: 2 }))).toMatchObject({ outcome: 'applied' });
    expect(await authAnswer(clerk)).toBe('OK');
    expect(await authAnswer(ADAPTER_USER)).toBe('OK');
  });

  it('reports a wrong password of the adapter as permanent', async () => {
    const refused = await enforcer.revoke(context({ system: systemAs(ADAPTER_USER, 'not-the-password') }));

    expect(refused).toEqual({
      outcome: 'failed-permanent',
      detail: `${WRONGPASS}: check the user and password of the system URL (the adapter's own user must be on)`,
    });
  });
});
