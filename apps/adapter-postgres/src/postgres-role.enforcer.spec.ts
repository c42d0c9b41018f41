import { CorruptJournalError } from '@portcullis/adapter-kit';
import { randomUUID } from 'node:crypto';
import { DatabaseError } from 'pg';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { PostgresRoleEnforcer, type PostgresRoleJournal } from './postgres-role.enforcer';
import type { LoginRole, RoleLoginState, RoleRepository, SessionTermination } from './postgres-role.repository';
import type { PostgresSystemConfig } from './postgres-system.config';

interface FakeRole {
  canLogin: boolean;
  superuser?: boolean;
  sessions?: number;
  /** ALTER ROLE on it fails with this error. */
  failWith?: DatabaseError;
}

function serverError(code: string, message: string): DatabaseError {
  const error = new DatabaseError(message, message.length, 'error');
  error.code = code;
  return error;
}

/** A server's roles in memory; `log` records every change and journal write in order. */
class FakeRoleRepository implements RoleRepository {
  constructor(
    readonly roles: Map<string, FakeRole>,
    private readonly log: string[],
  ) {}

  async loginRoles(): Promise<LoginRole[]> {
    return [...this.roles]
      .filter(([name, role]) => role.canLogin && name !== 'portcullis')
      .map(([name, role]) => ({ name, superuser: role.superuser ?? false }));
  }

  async loginStates(names: readonly string[]): Promise<RoleLoginState[]> {
    return names.flatMap((name) => {
      const role = this.roles.get(name);
      return role ? [{ name, canLogin: role.canLogin }] : [];
    });
  }

  async setLogin(name: string, canLogin: boolean): Promise<void> {
    const role = this.roles.get(name)!;
    if (role.failWith) throw role.failWith;
    role.canLogin = canLogin;
    this.log.push(`${canLogin ? 'LOGIN' : 'NOLOGIN'} ${name}`);
  }

  async terminateSessions(names: readonly string[]): Promise<SessionTermination> {
    let terminated = 0;
    for (const name of names) {
      terminated += this.roles.get(name)?.sessions ?? 0;
      if (this.roles.has(name)) this.roles.get(name)!.sessions = 0;
    }
    this.log.push(`terminate ${[...names].sort().join(',')}`);
    return { terminated, refused: [] };
  }

  async close(): Promise<void> {}
}

const system: PostgresSystemConfig = {
  url: 'postgres://portcullis@db/stock',
  revokeSuperusers: false,
  connectTimeoutMs: 5_000,
  statementTimeoutMs: 15_000,
};

describe('PostgresRoleEnforcer', () => {
  let log: string[];
  let roles: Map<string, FakeRole>;
  let journal: InMemoryEnforcementJournal;
  let enforcer: PostgresRoleEnforcer;

  function context(overrides: Partial<EnforcementContext<PostgresSystemConfig>> = {}): EnforcementContext<PostgresSystemConfig> {
    return {
      systemId: 'stock-db',
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
    roles = new Map<string, FakeRole>([
      ['portcullis', { canLogin: true }],
      ['clerk', { canLogin: true, sessions: 2 }],
      ['stock_app', { canLogin: true, sessions: 1 }],
      ['breakglass', { canLogin: true, sessions: 1 }],
      ['postgres', { canLogin: true, superuser: true }],
      ['reporting_group', { canLogin: false }],
    ]);
    journal = new InMemoryEnforcementJournal(undefined, (value) =>
      log.push(value === undefined ? 'journal cleared' : `journal ${JSON.stringify(value)}`),
    );
    enforcer = new PostgresRoleEnforcer(async () => new FakeRoleRepository(roles, log));
  });

  it('journals the roles it is about to change before changing them, then ends their sessions', async () => {
    const result = await enforcer.revoke(context());

    expect(log).toEqual([
      'journal {"revokedRoles":["clerk","stock_app"]}',
      'NOLOGIN clerk',
      'NOLOGIN stock_app',
      'terminate clerk,stock_app',
    ]);
    expect(result).toEqual({
      outcome: 'applied',
      detail:
        'LOGIN removed from 2 roles (clerk, stock_app); 3 sessions terminated; exempt: breakglass; residual access: superusers keep LOGIN (postgres)',
      principalsChanged: 2,
      sessionsTerminated: 3,
    });
    expect(roles.get('breakglass')).toMatchObject({ canLogin: true, sessions: 1 });
    expect(roles.get('portcullis')?.canLogin).toBe(true);
  });

  it('takes LOGIN from superusers too when the system says so', async () => {
    await enforcer.revoke(context({ system: { ...system, revokeSuperusers: true } }));
    expect(roles.get('postgres')?.canLogin).toBe(false);
  });

  it('after a crash mid-revoke, keeps owing LOGIN to roles that already look revoked', async () => {
    journal.value = { revokedRoles: ['clerk', 'stock_app'] } satisfies PostgresRoleJournal;
    roles.get('clerk')!.canLogin = false; // the ALTER happened, the outcome was never recorded
    roles.get('stock_app')!.canLogin = false;

    const again = await enforcer.revoke(context());
    expect(again).toMatchObject({ outcome: 'already-in-state', principalsChanged: 0, sessionsTerminated: 3 });
    expect(journal.value).toEqual({ revokedRoles: ['clerk', 'stock_app'] });

    const restored = await enforcer.restore(context({ generation: 2 }));
    expect(restored).toMatchObject({ outcome: 'applied', principalsChanged: 2 });
    expect(roles.get('clerk')?.canLogin).toBe(true);
    expect(roles.get('stock_app')?.canLogin).toBe(true);
  });

  it('revokes again roles that regained LOGIN by hand, and still owes back every role it took LOGIN from', async () => {
    await enforcer.revoke(context());
    roles.get('clerk')!.canLogin = true; // re-enabled by an administrator
    roles.set('intruder', { canLogin: true, sessions: 1 }); // created with LOGIN after the revoke
    expect(await enforcer.inspect(context())).toMatchObject({ state: 'active', principals: ['clerk', 'intruder'] });
    log.length = 0;

    const again = await enforcer.revoke(context());

    expect(again).toMatchObject({ outcome: 'applied', principalsChanged: 2, sessionsTerminated: 1 });
    expect(log).toEqual([
      'journal {"revokedRoles":["clerk","stock_app","intruder"]}',
      'NOLOGIN clerk',
      'NOLOGIN intruder',
      'terminate clerk,intruder,stock_app',
    ]);
    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'applied', principalsChanged: 3 });
    expect(['clerk', 'stock_app', 'intruder'].map((name) => roles.get(name)?.canLogin)).toEqual([true, true, true]);
  });

  it('gives LOGIN back to exactly the journalled roles, reports dropped ones and clears the journal', async () => {
    await enforcer.revoke(context());
    roles.delete('stock_app');
    log.length = 0;

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toEqual({
      outcome: 'applied',
      detail: 'LOGIN given back to 1 role (clerk); dropped meanwhile: stock_app',
      principalsChanged: 1,
    });
    expect(log).toEqual(['LOGIN clerk', 'journal cleared']);
    expect(roles.get('reporting_group')?.canLogin).toBe(false);
    expect(await enforcer.restore(context({ generation: 3 }))).toMatchObject({ outcome: 'already-in-state' });
  });

  it('revokes what it may and reports a missing privilege as a permanent failure', async () => {
    roles.get('stock_app')!.failWith = serverError('42501', 'permission denied to alter role "stock_app"');

    const result = await enforcer.revoke(context());

    expect(result.outcome).toBe('failed-permanent');
    expect(result.detail).toContain('LOGIN removed from 1 role (clerk)');
    expect(result.detail).toContain('could not remove LOGIN from stock_app: permission denied to alter role "stock_app"');
    expect(roles.get('clerk')?.canLogin).toBe(false);
  });

  it('keeps in the journal only what it could not give back', async () => {
    await enforcer.revoke(context());
    roles.get('clerk')!.failWith = serverError('42501', 'permission denied to alter role "clerk"');

    const result = await enforcer.restore(context({ generation: 2 }));

    expect(result).toMatchObject({ outcome: 'failed-permanent', principalsChanged: 1 });
    expect(journal.value).toEqual({ revokedRoles: ['clerk'] });
  });

  it('does not give LOGIN back, in a later restore, to a role an administrator took it from after a partial restore', async () => {
    await enforcer.revoke(context());
    roles.get('clerk')!.failWith = serverError('42501', 'permission denied to alter role "clerk"');
    await enforcer.restore(context({ generation: 2 })); // stock_app gets LOGIN back, clerk does not
    roles.get('stock_app')!.canLogin = false; // an administrator locks stock_app out (a leaver, say)
    delete roles.get('clerk')!.failWith;

    await enforcer.revoke(context({ generation: 3 }));
    const restored = await enforcer.restore(context({ generation: 4 }));

    expect(restored).toMatchObject({ outcome: 'applied', principalsChanged: 1 });
    expect(roles.get('clerk')?.canLogin).toBe(true);
    expect(roles.get('stock_app')?.canLogin).toBe(false);
  });

  it('after a lost connection mid-restore, keeps owing only what it had not given back yet', async () => {
    await enforcer.revoke(context());
    roles.get('stock_app')!.failWith = serverError('57P01', 'terminating connection due to administrator command');

    expect(await enforcer.restore(context({ generation: 2 }))).toMatchObject({ outcome: 'failed-retriable' });

    expect(roles.get('clerk')?.canLogin).toBe(true);
    expect(journal.value).toEqual({ revokedRoles: ['stock_app'] });
  });

  it('reports a lost connection as retriable', async () => {
    roles.get('clerk')!.failWith = serverError('57P01', 'terminating connection due to administrator command');
    expect(await enforcer.revoke(context())).toEqual({
      outcome: 'failed-retriable',
      detail: 'terminating connection due to administrator command (SQLSTATE 57P01)',
    });

    const unreachable = new PostgresRoleEnforcer(async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' });
    });
    expect(await unreachable.revoke(context())).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.5:5432' });
    expect(await unreachable.inspect(context())).toEqual({ state: 'unknown', detail: 'connect ECONNREFUSED 10.0.0.5:5432' });
  });

  it('refuses to act on a journal it did not write (the runtime reports that as a permanent failure)', async () => {
    journal.value = { something: 'else' };
    await expect(enforcer.restore(context())).rejects.toBeInstanceOf(CorruptJournalError);
    expect(log).toEqual([]);
  });

  it('inspects: active while a non-exempt role can log in, revoked once none can', async () => {
    expect(await enforcer.inspect(context())).toEqual({
      state: 'active',
      detail: '2 roles can log in: clerk, stock_app; superusers keep LOGIN: postgres',
      principals: ['clerk', 'stock_app'],
    });
    await enforcer.revoke(context());
    expect(await enforcer.inspect(context())).toEqual({
      state: 'revoked',
      detail: 'no non-exempt role can log in; superusers keep LOGIN: postgres',
    });
  });
});
