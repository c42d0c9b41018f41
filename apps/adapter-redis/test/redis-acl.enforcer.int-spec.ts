import { randomBytes, randomUUID } from 'node:crypto';
import { createClient } from 'redis';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { eventually } from '@test/support/eventually';
import { readTestEnv, testServers } from '@test/support/test-env';
import { RedisAclEnforcer } from '../src/redis-acl.enforcer';
import { RedisAclRepository } from '../src/redis-acl.repository';
import { ADAPTER_USER_PERMISSIONS } from '../src/redis-failure';
import { RedisSystemConfigSchema, type RedisSystemConfig } from '../src/redis-system.config';

/*
 * A revoke switches off every ACL user of the server that is not exempt, not the adapter's own and not
 * `default`. The server belongs to this spec alone, but tests run one after another on it: every user
 * here carries a tag unique to this run (hostile names aside, which are deleted right after), and every
 * test ends with a restore and the deletion of its users.
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

  async function alive(session: Connection): Promise<boolean> {
    if (!session.isOpen) return false;
    return session.ping().then(
      () => true,
      () => false,
    );
  }

  /** The user's flags as `ACL GETUSER` reports them; undefined for a missing user. */
  async function flags(user: string): Promise<string[] | undefined> {
    const reply = (await admin.sendCommand(['ACL', 'GETUSER', user])) as unknown[] | null;
    return reply ? (reply[reply.indexOf('flags') + 1] as string[]) : undefined;
  }

  async function enabled(users: readonly string[]): Promise<boolean[]> {
    return Promise.all(users.map(async (user) => (await flags(user))?.includes('on') ?? false));
  }

  async function aclUserCount(): Promise<number> {
    return ((await admin.sendCommand(['ACL', 'LIST'])) as string[]).length;
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
    admin.destroy();
  });

  it('revokes: users are switched off and their connections closed; exempt, own, default and pre-disabled users keep their state', async () => {
    const clerk = await createUser(`${TAG}clerk`);
    const app = await createUser(`${TAG}app`);
    const breakglass = await createUser(`${TAG}breakglass`);
    const retired = await createUser(`${TAG}retired`, [...APP_PERMISSIONS, 'off']);
    const clerkSession = await openSession(clerk);
    const appSessions = [await openSession(app), await openSession(app)];
    const breakglassSession = await openSession(breakglass);
    const exempt = { exemptPrincipals: [breakglass] };

    const revoked = await enforcer.revoke(context(exempt));

    expect(revoked).toEqual({
      outcome: 'applied',
      detail: `switched off 2 ACL users (${app}, ${clerk}); 3 connections closed; exempt: ${breakglass}; ${DEFAULT_STAYS_ON}; saved to the aclfile (ACL SAVE)`,
      principalsChanged: 2,
      sessionsTerminated: 3,
    });
    expect(await authAnswer(clerk)).toBe(WRONGPASS);
    expect(await authAnswer(app)).toBe(WRONGPASS);
    await eventually(async () => expect(await Promise.all([clerkSession, ...appSessions].map(alive))).toEqual([false, false, false]));
    expect(await alive(breakglassSession)).toBe(true);
    expect(await authAnswer(breakglass)).toBe('OK');
    expect(await authAnswer(ADAPTER_USER)).toBe('OK');
    expect(await flags('default')).toContain('on');
    expect(await admin.ping()).toBe('PONG');
    expect(await enforcer.inspect(context(exempt))).toEqual({ state: 'revoked', detail: `no managed ACL user is on; ${DEFAULT_STAYS_ON}` });

    const restored = await enforcer.restore(context({ ...exempt, generation: 2 }));

    expect(restored).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(await authAnswer(clerk)).toBe('OK');
    expect(await authAnswer(app)).toBe('OK');
    expect(await flags(retired)).toContain('off');
    expect(journal.value).toBeUndefined();
    // Same password (above) and same permissions as before.
    const clerkAgain = await openSession(clerk);
    expect(await clerkAgain.sendCommand(['SET', 'app:order', '1'])).toBe('OK');
    await expect(clerkAgain.sendCommand(['GET', 'billing:order'])).rejects.toThrow(/^NOPERM/);
    expect(await enforcer.inspect(context(exempt))).toEqual({
      state: 'active',
      detail: `2 ACL users on: ${app}, ${clerk}; ${DEFAULT_STAYS_ON}`,
      principals: [app, clerk],
    });
  });

  it('a repeated revoke is already-in-state and changes nothing', async () => {
    const clerk = await createUser(`${TAG}clerk`);
    expect((await enforcer.revoke(context())).outcome).toBe('applied');

    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0, sessionsTerminated: 0 });
    expect(await enabled([clerk])).toEqual([false]);
    expect((await enforcer.restore(context({ generation: 3 }))).outcome).toBe('applied');
    expect(await authAnswer(clerk)).toBe('OK');
  });

  it('after a crash in the middle of a revoke, the re-run and a restore switch every user back on', async () => {
    const users = [await createUser(`${TAG}a`), await createUser(`${TAG}b`), await createUser(`${TAG}c`)];
    // The process "dies" right after the first ACL SETUSER: the journal is written, one user is off, the
    // others are not, and no outcome is recorded.
    const crashing = new RedisAclEnforcer(async (config) => {
      const repository = await RedisAclRepository.connect(config);
      const setEnabled = repository.setEnabled.bind(repository);
      let switched = 0;
      repository.setEnabled = async (name, on) => {
        if (++switched === 2) throw new Error('adapter process killed');
        await setEnabled(name, on);
      };
      return repository;
    });
    expect(await crashing.revoke(context())).toEqual({
      outcome: 'failed-retriable',
      detail: `adapter process killed; switched off 1 ACL user (${users[0]}) before that`,
      principalsChanged: 1,
    });
    expect(await enabled(users)).toEqual([false, true, true]);

    const rerun = await enforcer.revoke(context());
    expect(rerun).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(await enabled(users)).toEqual([false, false, false]);

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 3 });
    expect(await enabled(users)).toEqual([true, true, true]);
  });

  it('handles hostile user names as names, never as rules', async () => {
    const countBefore = await aclUserCount();
    // Names that are rules or start like one; names cannot contain whitespace (Redis refuses them).
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
      await createUser(`semi;colon${TAG}`),
      await createUser(`it's"${TAG}`),
      await createUser(`ünïcødé✓${TAG}`),
    ];
    const sessions = await Promise.all(hostile.filter((user) => user !== '').map(openSession));

    const revoked = await enforcer.revoke(context());

    expect(revoked).toMatchObject({ outcome: 'applied', principalsChanged: hostile.length, sessionsTerminated: sessions.length });
    expect(await Promise.all(hostile.map((user) => authAnswer(user)))).toEqual(hostile.map(() => WRONGPASS));
    await eventually(async () => expect(await Promise.all(sessions.map(alive))).toEqual(sessions.map(() => false)));

    expect((await enforcer.restore(context({ generation: 2 }))).outcome).toBe('applied');
    // Each user kept its password: `reset` and `nopass` were never taken for rules.
    expect(await Promise.all(hostile.map((user) => authAnswer(user)))).toEqual(hostile.map(() => 'OK'));
    expect(await authAnswer('nopass', 'any password')).toBe(WRONGPASS);
    expect(await aclUserCount()).toBe(countBefore + hostile.length);
  });

  it('switches off again a user someone switched back on while revoked', async () => {
    const clerk = await createUser(`${TAG}clerk`);
    await enforcer.revoke(context());
    await admin.sendCommand(['ACL', 'SETUSER', clerk, 'on']);

    expect(await enforcer.inspect(context())).toEqual({
      state: 'active',
      detail: `1 ACL user on: ${clerk}; ${DEFAULT_STAYS_ON}`,
      principals: [clerk],
    });
    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(await authAnswer(clerk)).toBe(WRONGPASS);
    expect(journal.value).toEqual({ disabledUsers: [clerk] });
  });

  it('reports a server that is down as retriable, revokes once it is back, and the revoke survives a restart', async () => {
    const clerk = await createUser(`${TAG}clerk`);
    await admin.sendCommand(['ACL', 'SAVE']); // the users of this test survive the restarts below
    await servers.redis.kill();
    try {
      const down = await enforcer.revoke(context());
      expect(down).toEqual({ outcome: 'failed-retriable', detail: expect.stringContaining('ECONNREFUSED') });
      expect(await enforcer.inspect(context())).toMatchObject({ state: 'unknown' });
      expect(journal.value).toBeUndefined();
    } finally {
      await servers.redis.start();
    }

    expect(await enforcer.revoke(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    await servers.redis.kill();
    await servers.redis.start();

    expect(await authAnswer(clerk)).toBe(WRONGPASS); // ACL SAVE kept it off
    expect(await enforcer.restore(context({ generation: 3 }))).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
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
