import { ConnectionTimeoutError, SimpleError, SocketClosedUnexpectedlyError, TimeoutError } from 'redis';
import { UnexpectedAclReplyError } from './acl-reply.parser';
import { classifyRedisFailure } from './redis-failure';

describe('classifyRedisFailure', () => {
  it.each([
    'LOADING Redis is loading the dataset in memory',
    'BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',
    'MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no.',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'CLUSTERDOWN The cluster is down',
    'ERR max number of clients reached',
  ])('treats the error reply "%s" as retriable', (message) => {
    expect(classifyRedisFailure(new SimpleError(message))).toEqual({ outcome: 'failed-retriable', detail: message });
  });

  it('treats a missing permission as permanent and says which permissions the adapter needs', () => {
    const failure = classifyRedisFailure(new SimpleError("NOPERM User portcullis has no permissions to run the 'client|kill' command"));
    expect(failure).toEqual({
      outcome: 'failed-permanent',
      detail:
        "NOPERM User portcullis has no permissions to run the 'client|kill' command: the adapter's user needs exactly " +
        '+acl|list +acl|getuser +acl|setuser +acl|save +acl|whoami +client|kill',
    });
  });

  it.each([
    ['WRONGPASS invalid username-password pair or user is disabled.', /check the user and password of the system URL/],
    ['NOAUTH Authentication required.', /put the adapter's user and password in the system URL/],
    ["ERR unknown command `ACL`, with args beginning with: `WHOAMI`, ", /ACL needs Redis 6 or later$/],
  ])('treats "%s" as permanent, with a hint', (message, hint) => {
    const failure = classifyRedisFailure(new SimpleError(message));
    expect(failure.outcome).toBe('failed-permanent');
    expect(failure.detail).toMatch(hint);
  });

  it('treats a reply of an unexpected shape as permanent', () => {
    expect(classifyRedisFailure(new UnexpectedAclReplyError('ACL LIST answered null, not an array'))).toEqual({
      outcome: 'failed-permanent',
      detail: 'ACL LIST answered null, not an array',
    });
  });

  it('treats network and client errors without a reply as retriable', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:6379'), { code: 'ECONNREFUSED' });
    expect(classifyRedisFailure(refused)).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.7:6379' });
    expect(classifyRedisFailure(new ConnectionTimeoutError()).outcome).toBe('failed-retriable');
    expect(classifyRedisFailure(new SocketClosedUnexpectedlyError()).outcome).toBe('failed-retriable');
    expect(classifyRedisFailure(new TimeoutError())).toEqual({
      outcome: 'failed-retriable',
      detail: 'Redis did not answer within commandTimeoutMs',
    });
  });
});
