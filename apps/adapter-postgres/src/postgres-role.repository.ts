import { Client, escapeIdentifier } from 'pg';
import { describeError } from '@portcullis/adapter-kit';
import { classifyPostgresFailure } from './postgres-failure';
import type { PostgresSystemConfig } from './postgres-system.config';

export interface LoginRole {
  name: string;
  superuser: boolean;
}

export interface RoleLoginState {
  name: string;
  canLogin: boolean;
}

export interface SessionTermination {
  terminated: number;
  /** Sessions the adapter's role was not allowed to end, with the reason. */
  refused: string[];
}

/** The roles and sessions of one PostgreSQL server, as the enforcer needs them. */
export interface RoleRepository {
  /** Roles that can log in, except the adapter's own (`current_user`, `session_user`). */
  loginRoles(): Promise<LoginRole[]>;
  /** The LOGIN attribute of those of `names` that exist. */
  loginStates(names: readonly string[]): Promise<RoleLoginState[]>;
  setLogin(role: string, canLogin: boolean): Promise<void>;
  /** Ends the open sessions of `roles` (never the adapter's own). */
  terminateSessions(roles: readonly string[]): Promise<SessionTermination>;
  close(): Promise<void>;
}

export type RoleRepositoryFactory = (system: PostgresSystemConfig) => Promise<RoleRepository>;

/** How long `pg_terminate_backend` waits for a session to be gone. */
const TERMINATE_WAIT_MS = 3_000;

/** A `RoleRepository` over one connection. Role names only ever reach SQL as parameters or quoted identifiers. */
export class PostgresRoleRepository implements RoleRepository {
  private constructor(private readonly client: Client) {}

  static async connect(system: PostgresSystemConfig): Promise<PostgresRoleRepository> {
    const client = new Client({
      connectionString: system.url,
      connectionTimeoutMillis: system.connectTimeoutMs,
      statement_timeout: system.statementTimeoutMs,
      lock_timeout: system.statementTimeoutMs,
      query_timeout: system.statementTimeoutMs + 1_000,
      application_name: 'portcullis-adapter-postgres',
    });
    // A connection the server drops surfaces as the error of the query in flight; this only keeps the
    // client's 'error' event from crashing the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return new PostgresRoleRepository(client);
  }

  async loginRoles(): Promise<LoginRole[]> {
    const { rows } = await this.client.query<{ rolname: string; rolsuper: boolean }>(
      `select rolname, rolsuper from pg_catalog.pg_roles
        where rolcanlogin and rolname <> current_user and rolname <> session_user
        order by rolname`,
    );
    return rows.map((row) => ({ name: row.rolname, superuser: row.rolsuper }));
  }

  async loginStates(names: readonly string[]): Promise<RoleLoginState[]> {
    const { rows } = await this.client.query<{ rolname: string; rolcanlogin: boolean }>(
      'select rolname, rolcanlogin from pg_catalog.pg_roles where rolname = any($1::text[]) order by rolname',
      [names],
    );
    return rows.map((row) => ({ name: row.rolname, canLogin: row.rolcanlogin }));
  }

  async setLogin(role: string, canLogin: boolean): Promise<void> {
    await this.client.query(`ALTER ROLE ${escapeIdentifier(role)} ${canLogin ? 'LOGIN' : 'NOLOGIN'}`);
  }

  async terminateSessions(roles: readonly string[]): Promise<SessionTermination> {
    const result: SessionTermination = { terminated: 0, refused: [] };
    if (roles.length === 0) return result;
    const { rows } = await this.client.query<{ pid: number; usename: string }>(
      `select pid, usename from pg_catalog.pg_stat_activity
        where usename = any($1::text[]) and pid <> pg_backend_pid()`,
      [roles],
    );
    for (const { pid, usename } of rows) {
      try {
        const ended = await this.client.query<{ ended: boolean }>('select pg_terminate_backend($1::int, $2::bigint) as ended', [
          pid,
          TERMINATE_WAIT_MS,
        ]);
        if (ended.rows[0]?.ended) result.terminated += 1;
      } catch (error) {
        if (classifyPostgresFailure(error).outcome === 'failed-retriable') throw error;
        result.refused.push(`${usename} (pid ${pid}): ${describeError(error)}`);
      }
    }
    return result;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}
