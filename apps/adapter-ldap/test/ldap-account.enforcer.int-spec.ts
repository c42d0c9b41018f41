import { randomBytes, randomUUID } from 'node:crypto';
import { Attribute, Change, Client, ResultCodeError } from 'ldapts';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { readTestEnv } from '@test/support/test-env';
import { PERMANENT_LOCK_TIME } from '../src/account-lock';
import { LdapAccountEnforcer } from '../src/ldap-account.enforcer';
import { LdapAccountRepository } from '../src/ldap-account.repository';
import { LdapSystemConfigSchema, type LdapSystemConfig } from '../src/ldap-system.config';
import { escapeDnValue, WHO_AM_I_OID } from './ldap-protocol';

/*
 * Runs against the slapd of deploy/lib/slapd-server.ts, started once per run by deploy/run-tests.ts.
 * Every test gets its own organizational unit below ou=people and points the enforcer's baseDn at it,
 * so a revoke only ever sees that test's accounts. Each test ends with a restore and deletes its unit.
 */
const { ldap } = readTestEnv();
const RUN = randomBytes(3).toString('hex');
const PASSWORD = randomBytes(12).toString('hex');
/** The mdb database in cn=config, where the least-privilege test sets ACLs. */
const DATABASE_CONFIG = 'olcDatabase={1}mdb,cn=config';
/** slapd's default size limit for a bind DN other than the root DN. */
const SERVER_SIZE_LIMIT = 500;
/** An expired lockout after failed binds (the test server's policy locks out for 300 s). */
const OLD_LOCKOUT = '20200101000000Z';
const ignore = (): void => undefined;

describe('LdapAccountEnforcer against OpenLDAP with ppolicy', () => {
  const admin = new Client({ url: ldap.url, timeout: 10_000 });
  const openClients: Client[] = [];
  const configured = new Set<string>();
  let testCount = 0;
  let unit: string;
  let journal: InMemoryEnforcementJournal;
  let enforcer: LdapAccountEnforcer;
  let system: LdapSystemConfig;

  function context(overrides: Partial<EnforcementContext<LdapSystemConfig>> = {}): EnforcementContext<LdapSystemConfig> {
    return {
      systemId: 'corp-ldap',
      system,
      exemptPrincipals: [],
      journal,
      commandId: randomUUID(),
      generation: 1,
      logger: new JsonLogger({ write: ignore }),
      ...overrides,
    };
  }

  async function createUnit(name: string, parent = unit): Promise<string> {
    const dn = `ou=${escapeDnValue(name)},${parent}`;
    await admin.add(dn, { objectClass: 'organizationalUnit', ou: name });
    return dn;
  }

  async function createAccount(uid: string, options: { lockedTime?: string; parent?: string } = {}): Promise<string> {
    const dn = `uid=${escapeDnValue(uid)},${options.parent ?? unit}`;
    await admin.add(dn, {
      objectClass: 'inetOrgPerson',
      uid,
      cn: uid,
      sn: 'test',
      userPassword: PASSWORD,
      ...(options.lockedTime && { pwdAccountLockedTime: options.lockedTime }),
    });
    return dn;
  }

  /** undefined when `dn` can bind with the test password, else the LDAP result code of the refusal. */
  async function bindRefusal(dn: string): Promise<number | undefined> {
    const client = new Client({ url: ldap.url, timeout: 5_000 });
    try {
      await client.bind(dn, PASSWORD);
      return undefined;
    } catch (error) {
      if (error instanceof ResultCodeError) return error.code;
      throw error;
    } finally {
      await client.unbind().catch(ignore);
    }
  }

  async function bindRefusals(dns: readonly string[]): Promise<(number | undefined)[]> {
    const refusals: (number | undefined)[] = [];
    for (const dn of dns) refusals.push(await bindRefusal(dn));
    return refusals;
  }

  async function openSession(dn: string): Promise<Client> {
    const client = new Client({ url: ldap.url, timeout: 5_000 });
    openClients.push(client);
    await client.bind(dn, PASSWORD);
    return client;
  }

  /** The identity a connection is bound as, per the server (RFC 4532 Who am I?). */
  async function whoAmI(session: Client): Promise<string | undefined> {
    return (await session.exop(WHO_AM_I_OID)).value;
  }

  async function lockedTime(dn: string): Promise<string | undefined> {
    const { searchEntries } = await admin.search(dn, { scope: 'base', attributes: ['pwdAccountLockedTime'] });
    const value = searchEntries[0]?.pwdAccountLockedTime;
    return typeof value === 'string' ? value : undefined;
  }

  /** Sets a setting of the mdb database in cn=config (olcAccess, olcLimits) until the end of the test. */
  async function configureDatabase(attribute: string, values: string[]): Promise<void> {
    await admin.modify(DATABASE_CONFIG, new Change({ operation: 'replace', modification: new Attribute({ type: attribute, values }) }));
    configured.add(attribute);
  }

  async function deleteSubtree(dn: string): Promise<void> {
    const { searchEntries } = await admin.search(dn, { scope: 'sub', attributes: ['1.1'] });
    // Deepest first: a child's DN is longer than its parent's.
    const dns = searchEntries.map((entry) => entry.dn).sort((a, b) => b.length - a.length);
    for (const entry of dns) await admin.del(entry);
  }

  beforeAll(() => admin.bind(ldap.bindDn, ldap.bindPassword));

  beforeEach(async () => {
    unit = await createUnit(`it-${RUN}-${++testCount}`, `ou=people,${ldap.baseDn}`);
    system = LdapSystemConfigSchema.parse({ url: ldap.url, bindDn: ldap.bindDn, bindPassword: ldap.bindPassword, baseDn: unit });
    journal = new InMemoryEnforcementJournal();
    enforcer = new LdapAccountEnforcer();
  });

  afterEach(async () => {
    // Whatever happened in the test: give back what is owed, as the root DN (`system`).
    if (journal.value !== undefined) await new LdapAccountEnforcer().restore(context());
    await Promise.all(openClients.splice(0).map((client) => client.unbind().catch(ignore)));
    for (const attribute of configured) {
      await admin.modify(DATABASE_CONFIG, new Change({ operation: 'delete', modification: new Attribute({ type: attribute }) }));
    }
    configured.clear();
    await deleteSubtree(unit);
  });

  afterAll(() => admin.unbind());

  it('revoke: binds fail (49) except for exempt, unmatched and earlier locked accounts; restore gives back exactly what it took', async () => {
    const clerk = await createAccount('clerk');
    const app = await createAccount('app');
    const breakglass = await createAccount('BreakGlass');
    const auditor = await createAccount('auditor');
    const leaver = await createAccount('leaver', { lockedTime: PERMANENT_LOCK_TIME });
    const device = `cn=printer,${unit}`;
    await admin.add(device, { objectClass: ['device', 'simpleSecurityObject'], cn: 'printer', userPassword: PASSWORD });
    const clerkSession = await openSession(clerk);
    // By the principal attribute (matched by the server: uid ignores case), and by DN in another spelling.
    const exempt = { exemptPrincipals: ['breakglass', auditor.toUpperCase().replace(/,/g, ', ')] };

    const revoked = await enforcer.revoke(context(exempt));

    expect(revoked).toMatchObject({ outcome: 'applied', principalsChanged: 2, sessionsTerminated: 0 });
    expect(revoked.detail).toMatch(/^locked 2 accounts: /);
    expect(revoked.detail).toContain(`"${clerk}"`);
    expect(revoked.detail).toContain('residual access: sessions bound before the lock stay open until they close');
    expect(await bindRefusals([clerk, app])).toEqual([49, 49]);
    expect(await bindRefusals([breakglass, auditor, device])).toEqual([undefined, undefined, undefined]);
    expect(await lockedTime(leaver)).toBe(PERMANENT_LOCK_TIME);
    // The residual access the detail reports: a connection bound before the lock is still bound.
    expect(await whoAmI(clerkSession)).toBe(`dn:${clerk}`);
    expect(await enforcer.inspect(context(exempt))).toMatchObject({ state: 'revoked' });

    const restored = await enforcer.restore(context({ ...exempt, generation: 2 }));

    expect(restored).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(await bindRefusals([clerk, app, breakglass, auditor])).toEqual([undefined, undefined, undefined, undefined]);
    expect(await bindRefusal(leaver)).toBe(49);
    expect(await lockedTime(leaver)).toBe(PERMANENT_LOCK_TIME);
    expect(journal.value).toBeUndefined();
    expect(await enforcer.inspect(context(exempt))).toEqual({
      state: 'active',
      detail: `2 accounts can bind: "${clerk}", "${app}"`,
      principals: ['clerk', 'app'],
    });
  });

  it('a repeated revoke is already-in-state and changes nothing', async () => {
    const clerk = await createAccount('clerk');
    expect((await enforcer.revoke(context())).outcome).toBe('applied');

    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0 });
    expect(await bindRefusal(clerk)).toBe(49);
    expect((await enforcer.restore(context({ generation: 3 }))).outcome).toBe('applied');
    expect(await bindRefusal(clerk)).toBeUndefined();
  });

  it('after a crash in the middle of a revoke, the re-run and a restore unlock every account', async () => {
    const accounts = [await createAccount('a'), await createAccount('b'), await createAccount('c')];
    // The process "dies" right after its first lock: the journal is written, one account is locked,
    // the others are not, and no outcome is recorded.
    const crashing = new LdapAccountEnforcer(async (config) => {
      const repository = await LdapAccountRepository.connect(config);
      let locks = 0;
      return Object.assign(Object.create(repository) as LdapAccountRepository, {
        changeLock: async (dn: string, from: string | undefined, to: string | undefined) => {
          if (locks++ === 1) throw new Error('adapter process killed');
          return repository.changeLock(dn, from, to);
        },
        close: () => repository.close(),
      });
    });
    expect(await crashing.revoke(context())).toEqual({ outcome: 'failed-retriable', detail: 'adapter process killed' });
    expect((await bindRefusals(accounts)).filter((code) => code === 49)).toHaveLength(1);

    const rerun = await enforcer.revoke(context());
    expect(rerun).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(await bindRefusals(accounts)).toEqual([49, 49, 49]);

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 3 });
    expect(await bindRefusals(accounts)).toEqual([undefined, undefined, undefined]);
  });

  it('handles hostile names as values, never as filter or DN syntax', async () => {
    const names = [
      `o'brien "the quoted"`,
      'star*',
      '*',
      'starfish',
      '(paren)',
      'back\\slash',
      'ünïcødé ✓',
      'comma,name',
      'plus+name',
      'equals=name',
      'semi;colon',
      '#hash',
      'with space',
    ];
    const accounts = new Map<string, string>();
    for (const name of names) accounts.set(name, await createAccount(name));
    // "star*" exempts exactly that account; "comma,name" is exempted by its DN (with its escape);
    // the other principals name no account and must not widen into a wildcard or a second filter.
    const exempt = { exemptPrincipals: ['star*', accounts.get('comma,name')!, 'x)(uid=*', '*)(objectClass=*', `uid=*)(uid=*,${unit}`] };
    const expected = names.map((name) => (name === 'star*' || name === 'comma,name' ? undefined : 49));

    const revoked = await enforcer.revoke(context(exempt));

    expect(revoked).toMatchObject({ outcome: 'applied', principalsChanged: names.length - 2 });
    expect(await bindRefusals([...accounts.values()])).toEqual(expected);

    expect(await enforcer.restore(context({ ...exempt, generation: 2 }))).toMatchObject({ outcome: 'applied' });
    expect(await bindRefusals([...accounts.values()])).toEqual(names.map(() => undefined));
  });

  it('replaces an expired lockout with a lock until unlocked, and puts the lockout back on restore', async () => {
    const clumsy = await createAccount('clumsy', { lockedTime: OLD_LOCKOUT });

    expect(await enforcer.revoke(context())).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(await lockedTime(clumsy)).toBe(PERMANENT_LOCK_TIME);
    expect(await bindRefusal(clumsy)).toBe(49);

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(await lockedTime(clumsy)).toBe(OLD_LOCKOUT);
    // An expired lockout lets the account bind (and the bind clears it): it would not have kept it out.
    expect(await bindRefusal(clumsy)).toBeUndefined();
    expect(await lockedTime(clumsy)).toBeUndefined();
  });

  it('sees an out-of-band unlock: inspect says active, and the next revoke locks the account again', async () => {
    const clerk = await createAccount('clerk');
    const app = await createAccount('app');
    await enforcer.revoke(context());
    await admin.modify(clerk, new Change({ operation: 'delete', modification: new Attribute({ type: 'pwdAccountLockedTime' }) }));
    expect(await bindRefusal(clerk)).toBeUndefined();

    expect(await enforcer.inspect(context())).toEqual({ state: 'active', detail: `1 account can bind: "${clerk}"`, principals: ['clerk'] });
    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(await bindRefusals([clerk, app])).toEqual([49, 49]);
    expect(await enforcer.inspect(context())).toMatchObject({ state: 'revoked' });
    expect(await enforcer.restore(context({ generation: 3 }))).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(await bindRefusals([clerk, app])).toEqual([undefined, undefined]);
  });

  it('works with least privilege (write on pwdAccountLockedTime, read on the account attributes) and never locks itself', async () => {
    const granted = await createUnit('granted');
    const other = await createUnit('other');
    const adapter = await createAccount('portcullis-adapter', { parent: granted });
    const clerk = await createAccount('clerk', { parent: granted });
    const outsider = await createAccount('outsider', { parent: other });
    // The rules of the README, and binds for everyone.
    await configureDatabase('olcAccess', [
      `{0}to dn.subtree="${granted}" attrs=pwdAccountLockedTime by dn.exact="${adapter}" write by * break`,
      `{1}to dn.subtree="${unit}" attrs=entry,objectClass,uid by dn.exact="${adapter}" read by * break`,
      '{2}to attrs=userPassword by anonymous auth by * none',
    ]);
    // The configuration spells the adapter's DN differently: the server resolves it to its own entry.
    const leastPrivileged = { ...system, bindDn: adapter.toUpperCase(), bindPassword: PASSWORD };

    const revoked = await enforcer.revoke(context({ system: leastPrivileged }));

    expect(revoked.outcome).toBe('failed-permanent');
    expect(revoked.detail).toContain(`locked 1 account: "${clerk}"`);
    expect(revoked.detail).toContain(`could not lock "${outsider}": insufficientAccessRights (LDAP result 50)`);
    expect(await bindRefusals([clerk, outsider, adapter])).toEqual([49, undefined, undefined]);

    expect(await enforcer.restore(context({ system: leastPrivileged, generation: 2 }))).toMatchObject({
      outcome: 'applied',
      principalsChanged: 1,
    });
    expect(await bindRefusal(clerk)).toBeUndefined();
  });

  it('needs the size limit lifted for its bind DN once the accounts outnumber it, and says so', async () => {
    const adapter = await createAccount('portcullis-adapter');
    const users: string[] = [];
    for (let i = 0; i < SERVER_SIZE_LIMIT + 10; i++) users.push(await createAccount(`user-${i}`));
    await configureDatabase('olcAccess', [
      `{0}to dn.subtree="${unit}" attrs=pwdAccountLockedTime by dn.exact="${adapter}" write by * break`,
      `{1}to dn.subtree="${unit}" attrs=entry,objectClass,uid by dn.exact="${adapter}" read by * break`,
      '{2}to attrs=userPassword by anonymous auth by * none',
    ]);
    const asAdapter = { ...system, bindDn: adapter, bindPassword: PASSWORD };

    expect(await enforcer.revoke(context({ system: asAdapter }))).toEqual({
      outcome: 'failed-permanent',
      detail: expect.stringMatching(/^sizeLimitExceeded \(LDAP result 4\).*limits dn\.exact="<bindDn>" size=unlimited/),
    });

    await configureDatabase('olcLimits', [`dn.exact="${adapter}" size=unlimited`]);
    expect(await enforcer.revoke(context({ system: asAdapter }))).toMatchObject({ outcome: 'applied', principalsChanged: users.length });
    expect(await bindRefusals([users[0], users[users.length - 1], adapter])).toEqual([49, 49, undefined]);

    expect(await enforcer.restore(context({ system: asAdapter, generation: 2 }))).toMatchObject({
      outcome: 'applied',
      principalsChanged: users.length,
    });
    expect(await bindRefusal(users[users.length - 1])).toBeUndefined();
  });

  it('reports an unreachable directory as retriable, bad credentials and a missing base as permanent', async () => {
    const closedPort = { ...system, url: 'ldap://127.0.0.1:1', connectTimeoutMs: 2_000 };
    expect(await enforcer.revoke(context({ system: closedPort }))).toMatchObject({
      outcome: 'failed-retriable',
      detail: expect.stringContaining('ECONNREFUSED'),
    });
    expect(await enforcer.inspect(context({ system: closedPort }))).toMatchObject({ state: 'unknown' });

    const wrongPassword = { ...system, bindPassword: 'not-the-password' };
    expect(await enforcer.revoke(context({ system: wrongPassword }))).toMatchObject({
      outcome: 'failed-permanent',
      detail: expect.stringMatching(/^invalidCredentials \(LDAP result 49\): check bindDn and bindPassword/),
    });

    const missingBase = { ...system, baseDn: `ou=missing,${unit}` };
    expect(await enforcer.revoke(context({ system: missingBase }))).toMatchObject({
      outcome: 'failed-permanent',
      detail: expect.stringMatching(/^noSuchObject \(LDAP result 32\).*: check baseDn/),
    });
  });
});
