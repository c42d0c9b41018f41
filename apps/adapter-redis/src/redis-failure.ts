import { ErrorReply, TimeoutError } from 'redis';
import { describeError } from '@portcullis/adapter-kit';
import { UnexpectedAclReplyError } from './acl-reply.parser';

export interface RedisFailure {
  outcome: 'failed-retriable' | 'failed-permanent';
  detail: string;
}

/**
 * The commands the adapter's user may run, and nothing else: `AUTH` needs no permission, the rest is
 * what `RedisAclRepository` sends.
 */
export const ADAPTER_USER_PERMISSIONS = '+acl|list +acl|getuser +acl|setuser +acl|save +acl|whoami +client|kill';

/**
 * Error codes (the first word of an error reply) of a passing condition: loading the dataset, a busy
 * script, a replica without its master, a cluster resharding or down.
 */
const TRANSIENT_CODES = new Set(['LOADING', 'BUSY', 'MASTERDOWN', 'TRYAGAIN', 'CLUSTERDOWN']);
const TRANSIENT_MESSAGES = [/max(imum)? number of clients reached/i];

const HINTS: Record<string, string> = {
  NOPERM: `the adapter's user needs exactly ${ADAPTER_USER_PERMISSIONS}`,
  WRONGPASS: "check the user and password of the system URL (the adapter's own user must be on)",
  NOAUTH: "the server requires authentication: put the adapter's user and password in the system URL",
};

function errorCode(reply: ErrorReply): string {
  return reply.message.split(' ', 1)[0] ?? '';
}

function hintFor(reply: ErrorReply): string | undefined {
  if (/unknown command .ACL/i.test(reply.message)) return 'ACL needs Redis 6 or later';
  return HINTS[errorCode(reply)];
}

/**
 * Sorts an error from the server or the connection into retriable and permanent. Error replies are
 * deterministic (a missing permission stays missing) unless their code names a passing condition;
 * errors without a reply come from the network or the client (refused, reset, timed out) and pass.
 */
export function classifyRedisFailure(error: unknown): RedisFailure {
  if (error instanceof ErrorReply) {
    const transient = TRANSIENT_CODES.has(errorCode(error)) || TRANSIENT_MESSAGES.some((pattern) => pattern.test(error.message));
    const hint = hintFor(error);
    return {
      outcome: transient ? 'failed-retriable' : 'failed-permanent',
      detail: `${error.message}${hint ? `: ${hint}` : ''}`,
    };
  }
  if (error instanceof UnexpectedAclReplyError) return { outcome: 'failed-permanent', detail: error.message };
  if (error instanceof TimeoutError) return { outcome: 'failed-retriable', detail: 'Redis did not answer within commandTimeoutMs' };
  return { outcome: 'failed-retriable', detail: describeError(error) };
}
