import { randomBytes } from 'node:crypto';
import { createClient, ErrorReply } from 'redis';
import { DEFAULT_HOSTILE_LABELS, type TargetFixture, type TargetSession } from '@portcullis/adapter-kit/conformance';
import { TcpProxy } from '@test/support/tcp-proxy';
import { RedisAclEnforcer } from '../src/redis-acl.enforcer';
import { ADAPTER_USER_PERMISSIONS } from '../src/redis-failure';
import { RedisSystemConfigSchema, type RedisSystemConfig } from '../src/redis-system.config';

/** The answer of `AUTH` for a user that is `off` (or a wrong password, or no such user). */
const WRONGPASS = /^WRONGPASS/;
const NO_ACL_FILE = /not configured to use an ACL file/i;
const ignore = (): void => undefined;

type Connection = ReturnType<typeof createClient>;

/**
 * A Redis server (ACL users) as the target of the enforcer conformance suite. Principals are ACL users
 * with a prefix unique to the run, a password and nothing but `+ping`; a disabled principal is `off`.
 *
 * The enforcer connects through a TCP proxy as a user of its own holding exactly the documented
 * permissions (it spares its own user, and `default` since `includeDefaultUser` is false), so an outage
 * is simulated by closing the proxy while the server, shared with other specs, stays up. The fixture's
 * administration (as `default`), its logins and sessions connect directly.
 */
export class RedisTargetFixture implements TargetFixture<RedisSystemConfig> {
  readonly kind = 'redis';
  readonly endsSessions = true;
  /**
   * Redis refuses user names with whitespace ("Usernames can't contain spaces or null characters"), so
   * the default labels with a space cannot be principals at all: they are replaced by the same
   * characters without the space. Added: ACL rule syntax (`>password`, `<password`, `~pattern`,
   * `%RW~pattern`, `&channel`, `+@category`, `-@category`, `#hash`, `!hash`, `(selector)`, `nopass`).
   * The prefix keeps them from standing at the start of a name; the Redis spec covers names that are
   * rules exactly.
   */
  readonly hostileLabels = [
    ...DEFAULT_HOSTILE_LABELS.filter((label) => !/\s/.test(label)),
    'say"hi"',
    'ünïcødé✓',
    `';select/**/1;--`,
    '>pw<pw',
    '~*&*+@all',
    '%RW~*-@all',
    '#00!00',
    '(~*)nopass',
  ];
  private readonly prefix = `cf_${randomBytes(3).toString('hex')}_`;
  private readonly password = randomBytes(12).toString('hex');
  private readonly adapterUser = `${this.prefix}adapter`;
  private readonly host: string;
  private readonly port: number;
  private readonly admin: Connection;
  private readonly users: string[] = [];
  private proxy?: TcpProxy;

  /** @param adminUrl `redis://default:<password>@host:port`, a user that may manage ACL users. */
  constructor(adminUrl: string) {
    const server = new URL(adminUrl);
    this.host = server.hostname;
    this.port = Number(server.port);
    this.admin = createClient({ url: adminUrl, disableClientInfo: true });
    this.admin.on('error', ignore);
  }

  async setUp(): Promise<void> {
    await this.admin.connect();
    await this.createUser(this.adapterUser, ['on', ...ADAPTER_USER_PERMISSIONS.split(' ')]);
    this.proxy = await TcpProxy.start(this.host, this.port);
  }

  enforcer(): RedisAclEnforcer {
    return new RedisAclEnforcer();
  }

  system(): RedisSystemConfig {
    const url = `redis://${encodeURIComponent(this.adapterUser)}:${this.password}@${this.host}:${this.port}`;
    return RedisSystemConfigSchema.parse({ url: this.proxy!.url(url), connectTimeoutMs: 2_000, commandTimeoutMs: 5_000 });
  }

  async createPrincipal(label: string, { enabled = true }: { enabled?: boolean } = {}): Promise<string> {
    const user = `${this.prefix}${label}`;
    await this.createUser(user, [enabled ? 'on' : 'off', '+ping']);
    return user;
  }

  async canAuthenticate(principal: string): Promise<boolean> {
    // No credentials on connect: the answer is that of the explicit AUTH below, and nothing else.
    const client = this.connection();
    try {
      await client.connect();
      const reply: unknown = await client.sendCommand(['AUTH', principal, this.password]);
      if (reply !== 'OK') throw new Error(`AUTH ${principal} answered ${JSON.stringify(reply)}`);
      return true;
    } catch (error) {
      if (!(error instanceof ErrorReply && WRONGPASS.test(error.message))) throw error;
    } finally {
      if (client.isOpen) client.destroy();
    }
    // WRONGPASS is also the answer for a user that does not exist: that is no refusal of a principal.
    if ((await this.admin.sendCommand(['ACL', 'GETUSER', principal])) === null) {
      throw new Error(`ACL user "${principal}" does not exist (anymore)`);
    }
    return false;
  }

  async openSession(principal: string): Promise<TargetSession> {
    const client = this.connection({ username: principal, password: this.password });
    await client.connect();
    return {
      isOpen: async () => {
        if (!client.isOpen) return false;
        try {
          return (await client.ping()) === 'PONG';
        } catch {
          return false;
        }
      },
      close: async () => {
        if (client.isOpen) client.destroy();
      },
    };
  }

  async enableOutOfBand(principal: string): Promise<void> {
    await this.admin.sendCommand(['ACL', 'SETUSER', principal, 'on']);
  }

  async takeDown(): Promise<void> {
    await this.proxy!.down();
  }

  async bringUp(): Promise<void> {
    await this.proxy!.up();
  }

  async cleanup(): Promise<void> {
    try {
      const users = this.users.splice(0);
      // ACL DELUSER also closes the users' connections.
      if (users.length > 0) await this.admin.sendCommand(['ACL', 'DELUSER', ...users]);
      // The enforcer's ACL SAVE wrote these users to the aclfile: without a save now, a restart of the
      // shared server (as the Redis spec does) would bring them back, on and with a known password.
      await this.admin.sendCommand(['ACL', 'SAVE']).catch((error: unknown) => {
        if (!(error instanceof ErrorReply && NO_ACL_FILE.test(error.message))) throw error;
      });
    } finally {
      await this.proxy?.down();
      if (this.admin.isOpen) this.admin.destroy();
    }
  }

  /** Creates `user` with the fixture's password and `rules`, and fails if it exists already. */
  private async createUser(user: string, rules: readonly string[]): Promise<void> {
    // ACL SETUSER of an existing user would change it instead of creating one.
    if ((await this.admin.sendCommand(['ACL', 'GETUSER', user])) !== null) {
      throw new Error(`ACL user "${user}" exists already`);
    }
    this.users.push(user);
    // The name is an argument of its own: the rules only ever come after it.
    await this.admin.sendCommand(['ACL', 'SETUSER', user, 'reset', ...rules, `>${this.password}`]);
  }

  /** A direct connection to the server (not through the proxy) that never reconnects. */
  private connection(credentials: { username?: string; password?: string } = {}): Connection {
    const client = createClient({
      socket: { host: this.host, port: this.port, connectTimeout: 5_000, reconnectStrategy: false },
      disableClientInfo: true,
      disableOfflineQueue: true,
      commandOptions: { timeout: 5_000 },
      ...credentials,
    });
    client.on('error', ignore); // a closed session must not crash the test process
    return client;
  }
}
