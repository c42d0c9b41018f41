/** A reply to an ACL command that does not have the shape Redis documents. Retrying cannot help. */
export class UnexpectedAclReplyError extends Error {}

export interface AclListNames {
  names: string[];
  /** Users whose name is not valid UTF-8: they cannot be addressed by name, so they are not managed. */
  undecodable: number;
}

const USER_PREFIX = Buffer.from('user ');
const utf8 = new TextDecoder('utf-8', { fatal: true });

function describeReply(reply: unknown): string {
  return reply === null ? 'null' : Array.isArray(reply) ? 'an array' : typeof reply;
}

/**
 * The user names in an `ACL LIST` reply, read as raw bytes: each entry is `user <name> <rules>...`.
 * Redis refuses names with whitespace or NUL (`Usernames can't contain spaces or null characters`), so
 * the name runs to the next space; it may be empty and may start with `>`, `~`, `+` or `(`.
 */
export function parseAclListNames(reply: unknown): AclListNames {
  if (!Array.isArray(reply)) throw new UnexpectedAclReplyError(`ACL LIST answered ${describeReply(reply)}, not an array`);
  const result: AclListNames = { names: [], undecodable: 0 };
  for (const entry of reply) {
    if (!Buffer.isBuffer(entry) || !entry.subarray(0, USER_PREFIX.length).equals(USER_PREFIX)) {
      throw new UnexpectedAclReplyError(`ACL LIST answered an entry that is not "user <name> <rules>": ${String(entry)}`);
    }
    const end = entry.indexOf(0x20, USER_PREFIX.length);
    const name = entry.subarray(USER_PREFIX.length, end === -1 ? entry.length : end);
    try {
      result.names.push(utf8.decode(name));
    } catch {
      result.undecodable += 1;
    }
  }
  return result;
}

/**
 * Whether an `ACL GETUSER` reply (RESP2: `flags`, `[...]`, `passwords`, ... as alternating keys and
 * values) describes a user that is `on`; undefined when the user does not exist (a null reply).
 */
export function parseAclGetUserEnabled(name: string, reply: unknown): boolean | undefined {
  if (reply === null) return undefined;
  if (!Array.isArray(reply)) throw new UnexpectedAclReplyError(`ACL GETUSER ${name} answered ${describeReply(reply)}`);
  const key = reply.indexOf('flags');
  const flags: unknown = key >= 0 && key % 2 === 0 ? reply[key + 1] : undefined;
  if (!Array.isArray(flags)) {
    throw new UnexpectedAclReplyError(`ACL GETUSER ${name} answered without a list of flags`);
  }
  if (flags.includes('on')) return true;
  if (flags.includes('off')) return false;
  throw new UnexpectedAclReplyError(`ACL GETUSER ${name} answered neither "on" nor "off" among its flags: ${flags.join(' ')}`);
}
