import { CorruptJournalError } from '@portcullis/adapter-kit';
import { randomUUID } from 'node:crypto';
import { SimpleError } from 'redis';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { RedisAclEnforcer, type RedisAclJournal } from './redis-acl.enforcer';
import type { AclPersistence, AclRepository, AclUser, AclUserListing } from './redis-acl.repository';
import type { RedisSystemConfig } from './redis-system.config';

interface FakeUser {
  enabled: boolean;
  connections?: number;
}

/** One Redis server's ACL in memory; `log` records every change and journal write in order. */
class FakeRedis {
  readonly users = new Map<string, FakeUser>();
  ownUser = 'portcullis';
  persistence: AclPersistence = 'saved';
  undecodableNames = 0;
  /** The next call of that operation fails with this error. */
  failures: { setEnabled?: Error; closeConnections?: Error; persist?: Error } = {};

  constructor(readonly log: string[]) {}

  repository(): AclRepository {
    return {
      ownUser: async () => this.ownUser,
      listUsers: async (): Promise<AclUserListing> => ({
        users: [...this.users].map(([name, user]) => ({ name, enabled: user.enabled })),
        undecodableNames: this.undecodableNames,
      }),
      findUsers: async (names): Promise<AclUser[]> =>
        names.flatMap((name) => {
          const user = this.users.get(name);
          return user ? [{ name, enabled: user.enabled }] : [];
        }),
      setEnabled: async (name, enabled) => {
        this.fail('setEnabled');
        this.users.set(name, { ...this.users.get(name), enabled });
        this.log.push(`${enabled ? 'on' : 'off'} ${name}`);
      },
      closeConnections: async (name) => {
        this.fail('closeConnections');
        const user = this.users.get(name);
        const closed = user?.connections ?? 0;
        if (user) user.connections = 0;
        this.log.push(`kill ${name}`);
        return closed;
      },
      persist: async () => {
        this.fail('persist');
        this.log.push(`persist ${this.persistence}`);
        return this.persistence;
      },
      close: async () => undefined,
    };
  }

  private fail(operation: keyof FakeRedis['failures']): void {
    const failure = this.failures[operation];
    delete this.failures[operation];
    if (failure) throw failure;
  }
}

const system: RedisSystemConfig = {
  url: 'redis://portcullis:secret@cache:6379',
  includeDefaultUser: false,
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 10_000,
};

const SAVED = 'saved to the aclfile (ACL SAVE)';

describe('RedisAclEnforcer', () => {
  let log: string[];
  let redis: FakeRedis;
  let journal: InMemoryEnforcementJournal;
  let enforcer: RedisAclEnforcer;

  function context(overrides: Partial<EnforcementContext<RedisSystemConfig>> = {}): EnforcementContext<RedisSystemConfig> {
    return {
      systemId: 'session-cache',
      system,
      exemptPrincipals: ['breakglass'],
      journal,
      commandId: randomUUID(),
      generation: 1,
      logger: new JsonLogger({ write: () => undefined }),
      ...overrides,
    };
  }

  beforeEach(() => {
    log = [];
    redis = new FakeRedis(log);
    redis.users.set('default', { enabled: true, connections: 1 });
    redis.users.set('portcullis', { enabled: true, connections: 1 });
    redis.users.set('checkout', { enabled: true, connections: 2 });
    redis.users.set('worker', { enabled: true, connections: 1 });
    redis.users.set('breakglass', { enabled: true, connections: 1 });
    redis.users.set('retired', { enabled: false });
    journal = new InMemoryEnforcementJournal(undefined, (value) =>
      log.push(value === undefined ? 'journal cleared' : `journal ${JSON.stringify(value)}`),
    );
    enforcer = new RedisAclEnforcer(async () => redis.repository());
  });

  it('journals the users it is about to switch off before switching them off, then closes their connections and saves', async () => {
    const result = await enforcer.revoke(context());

    expect(log).toEqual([
      'journal {"disabledUsers":["checkout","worker"]}',
      'off checkout',
      'off worker',
      'kill checkout',
      'kill worker',
      'persist saved',
    ]);
    expect(result).toEqual({
      outcome: 'applied',
      detail: `switched off 2 ACL users (checkout, worker); 3 connections closed; exempt: breakglass; residual access: the default user stays on (includeDefaultUser is false); ${SAVED}`,
      principalsChanged: 2,
      sessionsTerminated: 3,
    });
    expect(redis.users.get('breakglass')).toEqual({ enabled: true, connections: 1 });
    expect(redis.users.get('portcullis')).toEqual({ enabled: true, connections: 1 });
    expect(redis.users.get('default')).toEqual({ enabled: true, connections: 1 });
  });

  it('switches the default user off too when the system says so', async () => {
    const result = await enforcer.revoke(context({ system: { ...system, includeDefaultUser: true } }));

    expect(redis.users.get('default')).toEqual({ enabled: false, connections: 0 });
    expect(result.detail).not.toContain('residual access');
    expect(journal.value).toEqual({ disabledUsers: ['default', 'checkout', 'worker'] });
  });

  it('never switches off its own user, even when that is the default user', async () => {
    redis.ownUser = 'default';
    redis.users.delete('portcullis');

    const result = await enforcer.revoke(context({ system: { ...system, includeDefaultUser: true } }));

    expect(redis.users.get('default')?.enabled).toBe(true);
    expect(result.detail).not.toContain('residual access');
    expect(log).not.toContain('kill default');
  });

  it('says when the change lives in memory only', async () => {
    redis.persistence = 'in-memory';

    const result = await enforcer.revoke(context());

    expect(result.detail).toMatch(
      /; in memory only: the server has no aclfile, so a Redis restart reloads the users from its configuration \(drift detection re-enforces\)$/,
    );
  });

  it('after a crash mid-revoke, still closes the connections of journalled users and switches them back on later', async () => {
    journal.value = { disabledUsers: ['checkout', 'worker'] } satisfies RedisAclJournal;
    redis.users.set('checkout', { enabled: false, connections: 2 }); // switched off, never disconnected nor saved
    redis.users.set('worker', { enabled: false, connections: 0 });

    const again = await enforcer.revoke(context());

    expect(again).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0, sessionsTerminated: 2 });
    expect(again.detail).toMatch(/^no managed ACL user left to switch off; 2 connections closed;/);
    expect(log).toEqual(['kill checkout', 'kill worker', 'persist saved']);
    expect(journal.value).toEqual({ disabledUsers: ['checkout', 'worker'] });

    const restored = await enforcer.restore(context({ generation: 2 }));

    expect(restored).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(redis.users.get('checkout')?.enabled).toBe(true);
    expect(redis.users.get('worker')?.enabled).toBe(true);
  });

  it('switches off again a user someone switched back on while revoked, without journalling it twice', async () => {
    await enforcer.revoke(context());
    redis.users.set('worker', { enabled: true, connections: 1 });
    expect(await enforcer.inspect(context())).toMatchObject({ state: 'active', principals: ['worker'] });

    const again = await enforcer.revoke(context({ generation: 2 }));

    expect(again).toMatchObject({ outcome: 'applied', principalsChanged: 1, sessionsTerminated: 1 });
    expect(redis.users.get('worker')?.enabled).toBe(false);
    expect(journal.value).toEqual({ disabledUsers: ['checkout', 'worker'] });
  });

  it('switches back on exactly the journalled users, reports deleted ones, saves, then clears the journal', async () => {
    await enforcer.revoke(context());
    redis.users.delete('worker');
    log.length = 0;

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toEqual({
      outcome: 'applied',
      detail: `switched 1 ACL user back on (checkout); deleted meanwhile: worker; ${SAVED}`,
      principalsChanged: 1,
    });
    expect(log).toEqual(['on checkout', 'persist saved', 'journal cleared']);
    expect(redis.users.get('retired')?.enabled).toBe(false);
    expect(await enforcer.restore(context({ generation: 3 }))).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0 });
  });

  it('reports a save refused after switching users off as permanent, says what was already done and keeps the journal', async () => {
    redis.failures.persist = new SimpleError("NOPERM User portcullis has no permissions to run the 'acl|save' command");

    const result = await enforcer.revoke(context());

    expect(result).toEqual({
      outcome: 'failed-permanent',
      detail:
        "NOPERM User portcullis has no permissions to run the 'acl|save' command: the adapter's user needs exactly " +
        '+acl|list +acl|getuser +acl|setuser +acl|save +acl|whoami +client|kill; switched off 2 ACL users (checkout, worker) before that',
      principalsChanged: 2,
    });
    expect(journal.value).toEqual({ disabledUsers: ['checkout', 'worker'] });
  });

  it('keeps the journal when it cannot switch users back on', async () => {
    await enforcer.revoke(context());
    redis.failures.setEnabled = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:6379'), { code: 'ECONNREFUSED' });

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.7:6379' });
    expect(journal.value).toEqual({ disabledUsers: ['checkout', 'worker'] });
  });

  it('reports an unreachable server as retriable and inspects it as unknown', async () => {
    const unreachable = new RedisAclEnforcer(async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:6379'), { code: 'ECONNREFUSED' });
    });

    expect(await unreachable.revoke(context())).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.7:6379' });
    expect(await unreachable.inspect(context())).toEqual({ state: 'unknown', detail: 'connect ECONNREFUSED 10.0.0.7:6379' });
  });

  it('refuses to act on a journal it did not write (the runtime reports that as a permanent failure)', async () => {
    journal.value = { revokedRoles: ['checkout'] };

    await expect(enforcer.restore(context())).rejects.toBeInstanceOf(CorruptJournalError);
    await expect(enforcer.revoke(context())).rejects.toBeInstanceOf(CorruptJournalError);
    expect(log).toEqual([]);
  });

  it('inspects: active while a managed user is on, revoked once none is, naming access it leaves alone', async () => {
    redis.undecodableNames = 1;
    const residual = 'residual access: the default user stays on (includeDefaultUser is false); residual access: 1 ACL user not managed (name not valid UTF-8)';

    expect(await enforcer.inspect(context())).toEqual({
      state: 'active',
      detail: `2 ACL users on: checkout, worker; ${residual}`,
      principals: ['checkout', 'worker'],
    });
    await enforcer.revoke(context());
    expect(await enforcer.inspect(context())).toEqual({ state: 'revoked', detail: `no managed ACL user is on; ${residual}` });
  });
});
