import { CorruptJournalError } from '@portcullis/adapter-kit';
import { randomUUID } from 'node:crypto';
import { InsufficientAccessError, InvalidCredentialsError, NoSuchAttributeError, TypeOrValueExistsError } from 'ldapts';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { PERMANENT_LOCK_TIME, type DirectoryAccount } from './account-lock';
import { LdapAccountEnforcer, type LdapAccountJournal } from './ldap-account.enforcer';
import type { AccountRepository } from './ldap-account.repository';
import { LdapSystemConfigSchema, type LdapSystemConfig } from './ldap-system.config';

const BASE = 'ou=people,dc=example,dc=org';
const dn = (uid: string) => `uid=${uid},${BASE}`;
/** An expired lockout after failed binds (pwdLockoutDuration has passed): the account can bind. */
const OLD_LOCKOUT = '20200101000000Z';

interface FakeAccount {
  uid: string;
  lockedTime?: string;
  /** Changing its lock fails with this error. */
  failWith?: Error;
}

/**
 * A directory in memory. Like a real server it compares `uid` values and DNs case-insensitively and
 * ignores spaces after commas in DNs, and its lock changes are conditional on the current lock.
 * `log` records every lock change and journal write in order.
 */
class FakeAccountRepository implements AccountRepository {
  constructor(
    readonly accounts: Map<string, FakeAccount>,
    private readonly log: string[],
  ) {}

  async listAccounts(): Promise<DirectoryAccount[]> {
    return [...this.accounts].map(([dn, { uid, lockedTime }]) => ({ dn, name: uid, ...(lockedTime !== undefined && { lockedTime }) }));
  }

  async findAccountsByPrincipal(principals: readonly string[]): Promise<string[]> {
    const wanted = new Set(principals.map((principal) => principal.toLowerCase()));
    return [...this.accounts].filter(([, account]) => wanted.has(account.uid.toLowerCase())).map(([dn]) => dn);
  }

  async findEntry(name: string): Promise<DirectoryAccount | undefined> {
    const normalize = (value: string) => value.toLowerCase().replace(/,\s+/g, ',');
    const found = [...this.accounts].find(([dn]) => normalize(dn) === normalize(name));
    return found && (found[1].lockedTime === undefined ? { dn: found[0] } : { dn: found[0], lockedTime: found[1].lockedTime });
  }

  async changeLock(dn: string, from: string | undefined, to: string | undefined): Promise<boolean> {
    const account = this.accounts.get(dn);
    if (!account) return false;
    if (account.failWith) throw account.failWith;
    if (account.lockedTime !== from) {
      throw from === undefined ? new TypeOrValueExistsError('value #0 already exists') : new NoSuchAttributeError('no such value');
    }
    account.lockedTime = to;
    this.log.push(`${to === undefined ? 'unlock' : `lock ${to}`} ${account.uid}`);
    return true;
  }

  async close(): Promise<void> {}
}

const system: LdapSystemConfig = LdapSystemConfigSchema.parse({
  url: 'ldaps://ldap.example.org',
  bindDn: 'cn=portcullis,ou=services,dc=example,dc=org',
  bindPassword: 'secret',
  baseDn: 'dc=example,dc=org',
});

describe('LdapAccountEnforcer', () => {
  let log: string[];
  let accounts: Map<string, FakeAccount>;
  let journal: InMemoryEnforcementJournal;
  let enforcer: LdapAccountEnforcer;

  function context(overrides: Partial<EnforcementContext<LdapSystemConfig>> = {}): EnforcementContext<LdapSystemConfig> {
    return {
      systemId: 'corp-ldap',
      system,
      exemptPrincipals: ['BreakGlass', 'UID=Auditor, OU=People, DC=Example, DC=Org'],
      journal,
      commandId: randomUUID(),
      generation: 1,
      logger: new JsonLogger({ write: () => undefined }),
      ...overrides,
    };
  }

  beforeEach(() => {
    log = [];
    accounts = new Map<string, FakeAccount>([
      ['cn=portcullis,ou=services,dc=example,dc=org', { uid: 'portcullis' }],
      [dn('clerk'), { uid: 'clerk' }],
      [dn('app'), { uid: 'app', lockedTime: OLD_LOCKOUT }],
      [dn('breakglass'), { uid: 'breakglass' }],
      [dn('auditor'), { uid: 'auditor' }],
      [dn('leaver'), { uid: 'leaver', lockedTime: PERMANENT_LOCK_TIME }],
    ]);
    journal = new InMemoryEnforcementJournal(undefined, (value) =>
      log.push(value === undefined ? 'journal cleared' : `journal ${JSON.stringify(value)}`),
    );
    enforcer = new LdapAccountEnforcer(async () => new FakeAccountRepository(accounts, log));
  });

  it('journals the accounts it is about to lock before locking them; spares exempt, own and already locked accounts', async () => {
    const result = await enforcer.revoke(context());

    expect(log).toEqual([
      `journal {"lockedAccounts":[{"dn":"${dn('clerk')}"},{"dn":"${dn('app')}","previousLockedTime":"${OLD_LOCKOUT}"}]}`,
      `lock ${PERMANENT_LOCK_TIME} clerk`,
      `lock ${PERMANENT_LOCK_TIME} app`,
    ]);
    expect(result).toEqual({
      outcome: 'applied',
      detail:
        `locked 2 accounts: "${dn('clerk')}", "${dn('app')}"; exempt: "BreakGlass", "UID=Auditor, OU=People, DC=Example, DC=Org"; ` +
        "residual access: sessions bound before the lock stay open until they close (the directory offers no standard way to end another client's connection)",
      principalsChanged: 2,
      sessionsTerminated: 0,
    });
    expect(accounts.get(dn('breakglass'))?.lockedTime).toBeUndefined();
    expect(accounts.get(dn('auditor'))?.lockedTime).toBeUndefined();
    expect(accounts.get('cn=portcullis,ou=services,dc=example,dc=org')?.lockedTime).toBeUndefined();
  });

  it('never locks its own bind DN, however the configuration spells it', async () => {
    const spelledDifferently = { ...system, bindDn: 'CN=Portcullis, OU=Services, DC=Example, DC=Org' };
    await enforcer.revoke(context({ system: spelledDifferently }));
    expect(accounts.get('cn=portcullis,ou=services,dc=example,dc=org')?.lockedTime).toBeUndefined();
  });

  it('gives back exactly what it took: unlocks its accounts, puts an earlier lockout back, leaves earlier permanent locks', async () => {
    await enforcer.revoke(context());
    accounts.delete(dn('clerk'));
    log.length = 0;

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toEqual({
      outcome: 'applied',
      detail: `unlocked 1 account: "${dn('app')}"; no longer in the directory: "${dn('clerk')}"`,
      principalsChanged: 1,
    });
    expect(log).toEqual([`lock ${OLD_LOCKOUT} app`, 'journal cleared']);
    expect(accounts.get(dn('leaver'))?.lockedTime).toBe(PERMANENT_LOCK_TIME);
    expect(await enforcer.restore(context({ generation: 3 }))).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0 });
  });

  it('after a crash mid-revoke, keeps owing the unlock of accounts that already look locked', async () => {
    const owed: LdapAccountJournal = { lockedAccounts: [{ dn: dn('clerk') }, { dn: dn('app'), previousLockedTime: OLD_LOCKOUT }] };
    journal.value = owed;
    accounts.get(dn('clerk'))!.lockedTime = PERMANENT_LOCK_TIME; // locked, but the outcome was never recorded
    accounts.get(dn('app'))!.lockedTime = PERMANENT_LOCK_TIME;

    const again = await enforcer.revoke(context());
    expect(again).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0, sessionsTerminated: 0 });
    expect(again.detail).toMatch(/^no account left to lock; /);
    expect(journal.value).toEqual(owed);

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(accounts.get(dn('clerk'))?.lockedTime).toBeUndefined();
    expect(accounts.get(dn('app'))?.lockedTime).toBe(OLD_LOCKOUT);
  });

  it('locks again an account an administrator unlocked during the revoke, and still owes every unlock', async () => {
    await enforcer.revoke(context());
    accounts.get(dn('clerk'))!.lockedTime = undefined;
    expect(await enforcer.inspect(context())).toEqual({
      state: 'active',
      detail: `1 account can bind: "${dn('clerk')}"`,
      principals: ['clerk'],
    });

    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(accounts.get(dn('clerk'))?.lockedTime).toBe(PERMANENT_LOCK_TIME);
    expect(journal.value).toEqual({ lockedAccounts: [{ dn: dn('clerk') }, { dn: dn('app'), previousLockedTime: OLD_LOCKOUT }] });
  });

  it('restore skips an account unlocked meanwhile and clears the journal', async () => {
    await enforcer.revoke(context());
    accounts.get(dn('clerk'))!.lockedTime = undefined;
    accounts.get(dn('app'))!.lockedTime = undefined;

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toEqual({ outcome: 'already-in-state', detail: 'every locked account is unlocked already', principalsChanged: 0 });
    expect(journal.value).toBeUndefined();
  });

  it('locks what it may and reports a refused account as a permanent failure with the privilege it needs', async () => {
    accounts.get(dn('app'))!.failWith = new InsufficientAccessError('no write access to "pwdAccountLockedTime"');

    const result = await enforcer.revoke(context());

    expect(result.outcome).toBe('failed-permanent');
    expect(result.detail).toContain(`locked 1 account: "${dn('clerk')}"`);
    expect(result.detail).toContain(
      `could not lock "${dn('app')}": insufficientAccessRights (LDAP result 50) "no write access to "pwdAccountLockedTime"": ` +
        "the adapter's bind DN needs write access to pwdAccountLockedTime",
    );
    expect(accounts.get(dn('clerk'))?.lockedTime).toBe(PERMANENT_LOCK_TIME);
  });

  it('reports a lock that changed between read and write as retriable, and does not overwrite it', async () => {
    const repository = new FakeAccountRepository(accounts, log);
    const racing = new LdapAccountEnforcer(async () =>
      Object.assign(Object.create(repository) as FakeAccountRepository, {
        listAccounts: async () => {
          const listed = await repository.listAccounts();
          accounts.get(dn('clerk'))!.lockedTime = '20990101000000Z'; // a lockout after failed binds, just now
          return listed;
        },
      }),
    );

    const result = await racing.revoke(context());

    expect(result.outcome).toBe('failed-retriable');
    expect(result.detail).toContain(`could not lock "${dn('clerk')}": attributeOrValueExists (LDAP result 20)`);
    expect(accounts.get(dn('clerk'))?.lockedTime).toBe('20990101000000Z');
    expect(accounts.get(dn('app'))?.lockedTime).toBe(PERMANENT_LOCK_TIME);
  });

  it('keeps in the journal only the accounts it could not unlock', async () => {
    await enforcer.revoke(context());
    accounts.get(dn('clerk'))!.failWith = new InsufficientAccessError('');

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toMatchObject({ outcome: 'failed-permanent', principalsChanged: 1 });
    expect(result.detail).toContain(`could not unlock "${dn('clerk')}": insufficientAccessRights (LDAP result 50):`);
    expect(journal.value).toEqual({ lockedAccounts: [{ dn: dn('clerk') }] });
  });

  it('does not unlock, in a later restore, an account an administrator locked after a partial restore', async () => {
    await enforcer.revoke(context());
    accounts.get(dn('clerk'))!.failWith = new InsufficientAccessError('');
    await enforcer.restore(context({ generation: 2 })); // app gets its earlier lockout back, clerk stays locked
    accounts.get(dn('app'))!.lockedTime = PERMANENT_LOCK_TIME; // an administrator locks app for good (a leaver, say)
    delete accounts.get(dn('clerk'))!.failWith;

    await enforcer.revoke(context({ generation: 3 }));
    await enforcer.restore(context({ generation: 4 }));

    expect(accounts.get(dn('clerk'))?.lockedTime).toBeUndefined();
    expect(accounts.get(dn('app'))?.lockedTime).toBe(PERMANENT_LOCK_TIME);
  });

  it('reports an unreachable directory as retriable and refused credentials as permanent', async () => {
    const unreachable = new LdapAccountEnforcer(async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:636'), { code: 'ECONNREFUSED' });
    });
    expect(await unreachable.revoke(context())).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.5:636' });
    expect(await unreachable.inspect(context())).toEqual({ state: 'unknown', detail: 'connect ECONNREFUSED 10.0.0.5:636' });

    const refused = new LdapAccountEnforcer(async () => {
      throw new InvalidCredentialsError('');
    });
    expect(await refused.restore(context())).toEqual({
      outcome: 'failed-permanent',
      detail:
        "invalidCredentials (LDAP result 49): check bindDn and bindPassword of the system, and that the adapter's own account is not locked",
    });
  });

  it('refuses to act on a journal it did not write (the runtime reports that as a permanent failure)', async () => {
    journal.value = { revokedRoles: ['clerk'] };
    await expect(enforcer.restore(context())).rejects.toBeInstanceOf(CorruptJournalError);
    await expect(enforcer.revoke(context())).rejects.toBeInstanceOf(CorruptJournalError);
    expect(log).toEqual([]);
  });

  it('inspects: active while a non-exempt account can bind (an expired lockout counts), revoked once none can', async () => {
    expect(await enforcer.inspect(context())).toEqual({
      state: 'active',
      detail: `2 accounts can bind: "${dn('clerk')}", "${dn('app')}"`,
      principals: ['clerk', 'app'],
    });
    await enforcer.revoke(context());
    expect(await enforcer.inspect(context())).toEqual({
      state: 'revoked',
      detail:
        "no non-exempt account can bind; residual access: sessions bound before the lock stay open until they close (the directory offers no standard way to end another client's connection)",
    });
  });
});
