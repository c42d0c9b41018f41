import { randomBytes, randomUUID } from 'node:crypto';
import { Client, DatabaseError, escapeIdentifier, escapeLiteral } from 'pg';
import { JsonLogger, type EnforcementContext } from '@portcullis/adapter-kit';
import { InMemoryEnforcementJournal } from '@portcullis/adapter-kit/testing';
import { readTestEnv } from '@test/support/test-env';
import { PostgresRoleEnforcer } from '../src/postgres-role.enforcer';
import { PostgresSystemConfigSchema, type PostgresSystemConfig } from '../src/postgres-system.config';

/*
 * What only PostgreSQL has: superusers, the least-privileged adapter role, and how server errors are
 * classified. What every enforcer must do (revoke and restore exactly, exempt principals, sessions,
 * repeats, outages, drift, crashes, hostile names) is checked by the shared conformance suite in
 * postgres.conformance.int-spec.ts.
 *
 * A revoke takes LOGIN from every role of the cluster that is not exempt, not the adapter's own and not
 * a superuser. The cluster is shared with other specs (one after another), so every role here carries a
 * prefix unique to this run, assertions look only at those roles, and every test ends with a restore.
 */
const adminUrl = readTestEnv().postgres.targetUrls[0];
const server = new URL(adminUrl);
const PREFIX = `pc_${randomBytes(3).toString('hex')}_`;
const PASSWORD = randomBytes(12).toString('hex');
const ignore = (): void => undefined;

describe('PostgresRoleEnforcer against PostgreSQL', () => {
  const admin = new Client({ connectionString: adminUrl });
  const createdRoles: string[] = [];
  const openClients: Client[] = [];
  const superuserSystem = PostgresSystemConfigSchema.parse({ url: adminUrl });
  let journal: InMemoryEnforcementJournal;
  let enforcer: PostgresRoleEnforcer;

  function context(overrides: Partial<EnforcementContext<PostgresSystemConfig>> = {}): EnforcementContext<PostgresSystemConfig> {
    return {
      systemId: 'stock-db',
      system: superuserSystem,
      exemptPrincipals: [],
      journal,
      commandId: randomUUID(),
      generation: 1,
      logger: new JsonLogger({ write: ignore }),
      ...overrides,
    };
  }

  async function createRole(name: string, attributes = 'LOGIN'): Promise<string> {
    const role = `${PREFIX}${name}`;
    createdRoles.push(role);
    await admin.query(`CREATE ROLE ${escapeIdentifier(role)} ${attributes} PASSWORD ${escapeLiteral(PASSWORD)}`);
    return role;
  }

  function clientAs(user: string): Client {
    const client = new Client({
      host: server.hostname,
      port: Number(server.port),
      database: server.pathname.slice(1) || 'postgres',
      user,
      password: PASSWORD,
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', ignore); // a terminated session must not crash the test process
    return client;
  }

  async function openSession(role: string): Promise<Client> {
    const client = clientAs(role);
    openClients.push(client);
    await client.connect();
    return client;
  }

  /** undefined when `role` can connect, else the SQLSTATE of the refusal. */
  async function loginRefusal(role: string): Promise<string | undefined> {
    const client = clientAs(role);
    try {
      await client.connect();
      return undefined;
    } catch (error) {
      return error instanceof DatabaseError ? error.code : String(error);
    } finally {
      await client.end().catch(ignore);
    }
  }

  /** LOGIN of each role, read one after another over the single admin connection. */
  async function canLoginEach(roles: readonly string[]): Promise<(boolean | undefined)[]> {
    const states: (boolean | undefined)[] = [];
    for (const role of roles) states.push(await canLogin(role));
    return states;
  }

  async function alive(session: Client): Promise<boolean> {
    return session.query('select 1').then(
      () => true,
      () => false,
    );
  }

  async function canLogin(role: string): Promise<boolean | undefined> {
    const { rows } = await admin.query<{ rolcanlogin: boolean }>('select rolcanlogin from pg_roles where rolname = $1', [role]);
    return rows[0]?.rolcanlogin;
  }

  beforeAll(async () => {
    admin.on('error', ignore);
    await admin.connect();
  });

  beforeEach(() => {
    journal = new InMemoryEnforcementJournal();
    enforcer = new PostgresRoleEnforcer();
  });

  afterEach(async () => {
    // Whatever happened in the test: give back what is owed, so other specs find their roles as they left them.
    if (journal.value !== undefined) await new PostgresRoleEnforcer().restore(context({ journal }));
    await Promise.all(openClients.splice(0).map((client) => client.end().catch(ignore)));
    for (const role of createdRoles.splice(0)) {
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where usename = $1', [role]);
      await admin.query(`DROP ROLE IF EXISTS ${escapeIdentifier(role)}`);
    }
  });

  afterAll(() => admin.end());

  it('leaves superusers their LOGIN and names them as residual access, unless revokeSuperusers is set', async () => {
    const clerk = await createRole('clerk');
    const dba = await createRole('dba', 'LOGIN SUPERUSER');
    const dbaSession = await openSession(dba);

    const revoked = await enforcer.revoke(context());

    expect(revoked.outcome).toBe('applied');
    expect(revoked.detail).toMatch(new RegExp(`residual access: superusers keep LOGIN \\(.*${dba}`));
    expect(await canLoginEach([clerk, dba])).toEqual([false, true]);
    expect(await alive(dbaSession)).toBe(true);
    expect(await enforcer.inspect(context())).toMatchObject({
      state: 'revoked',
      detail: expect.stringMatching(new RegExp(`superusers keep LOGIN: .*${dba}`)),
    });

    const system = PostgresSystemConfigSchema.parse({ url: adminUrl, revokeSuperusers: true });
    const withSuperusers = await enforcer.revoke(context({ system, generation: 2 }));

    expect(withSuperusers.outcome).toBe('applied');
    expect(withSuperusers.detail).not.toContain('residual access');
    expect(await loginRefusal(dba)).toBe('28000');
    expect(await alive(dbaSession)).toBe(false);

    expect((await enforcer.restore(context({ system, generation: 3 }))).outcome).toBe('applied');
    expect(await canLoginEach([clerk, dba])).toEqual([true, true]);
  });

  it('works with least privilege: CREATEROLE with ADMIN OPTION on managed roles, plus pg_signal_backend', async () => {
    const adapterRole = await createRole('adapter', 'LOGIN CREATEROLE');
    await admin.query(`GRANT pg_signal_backend TO ${escapeIdentifier(adapterRole)}`);
    const managed = await createRole('managed');
    await admin.query(`GRANT ${escapeIdentifier(managed)} TO ${escapeIdentifier(adapterRole)} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`);
    const unmanaged = await createRole('unmanaged');
    const managedSession = await openSession(managed);
    const url = new URL(adminUrl);
    url.username = encodeURIComponent(adapterRole);
    url.password = PASSWORD;
    const system = PostgresSystemConfigSchema.parse({ url: url.toString() });

    const revoked = await enforcer.revoke(context({ system }));

    expect(revoked.outcome).toBe('failed-permanent');
    expect(revoked.detail).toMatch(new RegExp(`could not remove LOGIN from .*${unmanaged}: permission denied`));
    expect(await canLogin(managed)).toBe(false);
    expect(await alive(managedSession)).toBe(false);
    expect(await canLogin(adapterRole)).toBe(true); // its own role is never touched
    expect(await canLogin(unmanaged)).toBe(true);

    expect((await enforcer.restore(context({ system, generation: 2 }))).outcome).toBe('applied');
    expect(await loginRefusal(managed)).toBeUndefined();
  });

  it('reports an unreachable server as retriable and bad credentials as permanent', async () => {
    const closedPort = new URL(adminUrl);
    closedPort.port = '1';
    const unreachable = await enforcer.revoke(context({ system: PostgresSystemConfigSchema.parse({ url: closedPort.toString() }) }));
    expect(unreachable).toMatchObject({ outcome: 'failed-retriable', detail: expect.stringContaining('ECONNREFUSED') });

    const wrongPassword = new URL(adminUrl);
    wrongPassword.password = 'not-the-password';
    const refused = await enforcer.revoke(context({ system: PostgresSystemConfigSchema.parse({ url: wrongPassword.toString() }) }));
    expect(refused).toMatchObject({ outcome: 'failed-permanent', detail: expect.stringContaining('SQLSTATE 28P01') });
  });
});
