import { randomBytes } from 'node:crypto';
import { Client, escapeIdentifier, escapeLiteral } from 'pg';

/**
 * A real PostgreSQL server used as an enforcement target in a spec: creates login roles unique to the
 * spec and checks, the way a user would, whether they can still log in.
 */
export class PostgresTarget {
  readonly password = randomBytes(12).toString('hex');

  constructor(
    /** Superuser URL of the target server. */
    readonly url: string,
    /** Prefix of every role this spec creates (roles are per cluster and shared with other specs). */
    private readonly prefix: string,
  ) {}

  role(name: string): string {
    return `${this.prefix}${name}`;
  }

  async admin<T>(run: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({ connectionString: this.url });
    await client.connect();
    try {
      return await run(client);
    } finally {
      await client.end();
    }
  }

  async createRoles(roles: Record<string, 'LOGIN' | 'NOLOGIN'>): Promise<void> {
    await this.admin(async (client) => {
      for (const [name, attribute] of Object.entries(roles)) {
        await client.query(`CREATE ROLE ${escapeIdentifier(this.role(name))} ${attribute} PASSWORD ${escapeLiteral(this.password)}`);
      }
    });
  }

  /** Gives LOGIN back by hand, as an administrator working around Portcullis would. */
  async grantLoginOutOfBand(name: string): Promise<void> {
    await this.admin((client) => client.query(`ALTER ROLE ${escapeIdentifier(this.role(name))} LOGIN`));
  }

  async connectAs(name: string, url = this.url): Promise<Client> {
    const target = new URL(url);
    const client = new Client({
      host: target.hostname,
      port: Number(target.port),
      database: target.pathname.slice(1) || 'postgres',
      user: this.role(name),
      password: this.password,
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', () => undefined); // a terminated session must not crash the test process
    await client.connect();
    return client;
  }

  async canLogIn(name: string): Promise<boolean> {
    try {
      await (await this.connectAs(name)).end();
      return true;
    } catch (error) {
      if (/not permitted to log in/.test((error as Error).message)) return false;
      throw error;
    }
  }
}
