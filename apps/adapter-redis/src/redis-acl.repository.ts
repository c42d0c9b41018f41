import { createClient, ErrorReply, RESP_TYPES } from 'redis';
import { parseAclGetUserEnabled, parseAclListNames, UnexpectedAclReplyError } from './acl-reply.parser';
import type { RedisSystemConfig } from './redis-system.config';

export interface AclUser {
  name: string;
  /** The user's `on`/`off` flag: an `off` user cannot authenticate. */
  enabled: boolean;
}

export interface AclUserListing {
  users: AclUser[];
  /** Users whose name is not valid UTF-8; they cannot be addressed by name. */
  undecodableNames: number;
}

/** Whether a change to the ACL survives a restart of Redis. */
export type AclPersistence = 'saved' | 'in-memory';

/** The ACL users and connections of one Redis server, as the enforcer needs them. */
export interface AclRepository {
  /** The user the adapter is authenticated as (`ACL WHOAMI`). */
  ownUser(): Promise<string>;
  listUsers(): Promise<AclUserListing>;
  /** Those of `names` that exist. */
  findUsers(names: readonly string[]): Promise<AclUser[]>;
  /** `ACL SETUSER <name> on|off`: passwords and permissions stay as they are. */
  setEnabled(name: string, enabled: boolean): Promise<void>;
  /** Closes the user's connections (never the adapter's own) and returns how many; 0 for a missing user. */
  closeConnections(name: string): Promise<number>;
  /** `ACL SAVE` to the server's aclfile, or `in-memory` when it has none. */
  persist(): Promise<AclPersistence>;
  close(): Promise<void>;
}

export type AclRepositoryFactory = (system: RedisSystemConfig) => Promise<AclRepository>;

type RedisConnection = ReturnType<typeof createClient>;

const NO_ACL_FILE = /not configured to use an ACL file/i;
const NO_SUCH_USER = /^ERR No such user/;

/**
 * An `AclRepository` over one connection. Every user name travels as a command argument of its own
 * (`ACL SETUSER` reads the arguments after the name as rules, so a name is never taken for a rule),
 * never inside a command string.
 */
export class RedisAclRepository implements AclRepository {
  private constructor(private readonly client: RedisConnection) {}

  static async connect(system: RedisSystemConfig): Promise<RedisAclRepository> {
    const client = createClient({
      url: system.url,
      // CLIENT SETINFO is not among the adapter's permissions: every attempt would land in ACL LOG.
      disableClientInfo: true,
      disableOfflineQueue: true,
      socket: { connectTimeout: system.connectTimeoutMs, reconnectStrategy: false },
      commandOptions: { timeout: system.commandTimeoutMs },
    });
    // A dropped connection surfaces as the error of the command in flight; this only keeps the
    // client's 'error' event from crashing the process.
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      if (client.isOpen) client.destroy();
      throw error;
    }
    return new RedisAclRepository(client);
  }

  async ownUser(): Promise<string> {
    const reply = await this.client.sendCommand(['ACL', 'WHOAMI']);
    if (typeof reply !== 'string') throw new UnexpectedAclReplyError('ACL WHOAMI answered something other than a name');
    return reply;
  }

  async listUsers(): Promise<AclUserListing> {
    const reply = await this.client.sendCommand(['ACL', 'LIST'], { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } });
    const { names, undecodable } = parseAclListNames(reply);
    return { users: await this.findUsers(names), undecodableNames: undecodable };
  }

  async findUsers(names: readonly string[]): Promise<AclUser[]> {
    // Sent together, so they travel as one pipeline.
    const users = await Promise.all(
      names.map(async (name) => {
        const enabled = parseAclGetUserEnabled(name, await this.client.sendCommand(['ACL', 'GETUSER', name]));
        return enabled === undefined ? undefined : { name, enabled };
      }),
    );
    return users.filter((user) => user !== undefined);
  }

  async setEnabled(name: string, enabled: boolean): Promise<void> {
    await this.client.sendCommand(['ACL', 'SETUSER', name, enabled ? 'on' : 'off']);
  }

  async closeConnections(name: string): Promise<number> {
    try {
      // The filter form of CLIENT KILL skips the calling connection (SKIPME yes).
      const closed = await this.client.sendCommand(['CLIENT', 'KILL', 'USER', name]);
      if (typeof closed !== 'number') throw new UnexpectedAclReplyError(`CLIENT KILL USER ${name} answered something other than a count`);
      return closed;
    } catch (error) {
      if (error instanceof ErrorReply && NO_SUCH_USER.test(error.message)) return 0;
      throw error;
    }
  }

  async persist(): Promise<AclPersistence> {
    try {
      await this.client.sendCommand(['ACL', 'SAVE']);
      return 'saved';
    } catch (error) {
      if (error instanceof ErrorReply && NO_ACL_FILE.test(error.message)) return 'in-memory';
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.client.isOpen) this.client.destroy();
  }
}
