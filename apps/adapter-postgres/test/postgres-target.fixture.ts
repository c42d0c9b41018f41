import { randomBytes } from 'node:crypto';
import { Client, DatabaseError, escapeIdentifier, escapeLiteral } from 'pg';
import { DEFAULT_HOSTILE_LABELS, type TargetFixture, type TargetSession } from '@portcullis/adapter-kit/conformance';
import { TcpProxy } from '@test/support/tcp-proxy';
import { PostgresRoleEnforcer } from '../src/postgres-role.enforcer';
import { PostgresSystemConfigSchema, type PostgresSystemConfig } from '../src/postgres-system.config';

/** PostgreSQL would silently truncate a longer identifier (NAMEDATALEN - 1 bytes). */
const MAX_ROLE_NAME_BYTES = 63;
/** invalid_authorization_specification: "role ... is not permitted to log in". */
const LOGIN_REFUSED = '28000';
const ignore = (): void => undefined;

/**
 * A PostgreSQL cluster as the target of the enforcer conformance suite. The enforcer connects as the
 * server's superuser through a TCP proxy, so an outage is simulated by closing the proxy while the
 * server, shared with other specs, stays up; users and the fixture's own checks connect directly.
 */
export class PostgresTargetFixture implements TargetFixture<PostgresSystemConfig> {
  readonly kind = 'postgres';
  readonly endsSessions = true;
  readonly hostileLabels = [...DEFAULT_HOSTILE_LABELS, '$$dollar$$', 'U&"\\0041"', '/* c */ -- x'];
  private readonly prefix = `cf_${randomBytes(3).toString('hex')}_`;
  private readonly password = randomBytes(12).toString('hex');
  private readonly server: URL;
  private readonly admin: Client;
  private readonly roles: string[] = [];
  private proxy?: TcpProxy;

  constructor(private readonly adminUrl: string) {
    this.server = new URL(adminUrl);
    this.admin = new Client({ connectionString: adminUrl });
    this.admin.on('error', ignore);
  }

  async setUp(): Promise<void> {
    await this.admin.connect();
    this.proxy = await TcpProxy.start(this.server.hostname, Number(this.server.port));
  }

  enforcer(): PostgresRoleEnforcer {
    return new PostgresRoleEnforcer();
  }

  system(): PostgresSystemConfig {
    return PostgresSystemConfigSchema.parse({ url: this.proxy!.url(this.adminUrl), connectTimeoutMs: 2_000 });
  }

  async createPrincipal(label: string, { enabled = true }: { enabled?: boolean } = {}): Promise<string> {
    const role = `${this.prefix}${label}`;
    if (Buffer.byteLength(role) > MAX_ROLE_NAME_BYTES) {
      throw new Error(`role name "${role}" is longer than ${MAX_ROLE_NAME_BYTES} bytes; use a shorter label`);
    }
    await this.admin.query(
      `CREATE ROLE ${escapeIdentifier(role)} ${enabled ? 'LOGIN' : 'NOLOGIN'} PASSWORD ${escapeLiteral(this.password)}`,
    );
    this.roles.push(role);
    return role;
  }

  async canAuthenticate(principal: string): Promise<boolean> {
    const client = this.clientAs(principal);
    try {
      await client.connect();
      return true;
    } catch (error) {
      if (error instanceof DatabaseError && error.code === LOGIN_REFUSED) return false;
      throw error;
    } finally {
      await client.end().catch(ignore);
    }
  }

  async openSession(principal: string): Promise<TargetSession> {
    const client = this.clientAs(principal);
    await client.connect();
    return {
      isOpen: () =>
        client.query('select 1').then(
          () => true,
          () => false,
        ),
      close: () => client.end(),
    };
  }

  async enableOutOfBand(principal: string): Promise<void> {
    await this.admin.query(`ALTER ROLE ${escapeIdentifier(principal)} LOGIN`);
  }

  async takeDown(): Promise<void> {
    await this.proxy!.down();
  }

  async bringUp(): Promise<void> {
    await this.proxy!.up();
  }

  async cleanup(): Promise<void> {
    for (const role of this.roles.splice(0)) {
      await this.admin.query('select pg_terminate_backend(pid) from pg_stat_activity where usename = $1', [role]);
      await this.admin.query(`DROP ROLE IF EXISTS ${escapeIdentifier(role)}`);
    }
    await this.proxy?.down();
    await this.admin.end();
  }

  private clientAs(user: string): Client {
    const client = new Client({
      host: this.server.hostname,
      port: Number(this.server.port),
      database: this.server.pathname.slice(1) || 'postgres',
      user,
      password: this.password,
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', ignore); // a terminated session must not crash the test process
    return client;
  }
}
