import { parseAclGetUserEnabled, parseAclListNames, UnexpectedAclReplyError } from './acl-reply.parser';

const entries = (...lines: (string | Buffer)[]): Buffer[] => lines.map((line) => (Buffer.isBuffer(line) ? line : Buffer.from(line)));

describe('parseAclListNames', () => {
  it('reads each name up to the first space, whatever it looks like', () => {
    const reply = entries(
      'user default on nopass sanitize-payload ~* &* +@all',
      'user  on resetchannels -@all', // the empty name
      'user >pw on resetchannels -@all',
      'user ~* off resetchannels -@all',
      'user +@all on resetchannels -@all',
      'user semi;colon on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~* resetchannels +@all',
      `user it's"q on resetchannels -@all`,
      'user ünïcødé✓ on resetchannels -@all (~x resetchannels -@all +get)',
      'user on on resetchannels -@all',
    );

    expect(parseAclListNames(reply)).toEqual({
      names: ['default', '', '>pw', '~*', '+@all', 'semi;colon', `it's"q`, 'ünïcødé✓', 'on'],
      undecodable: 0,
    });
  });

  it('counts names that are not valid UTF-8 instead of mangling them', () => {
    const reply = entries('user alice on', Buffer.concat([Buffer.from('user x'), Buffer.from([0xff, 0xfe]), Buffer.from(' on -@all')]));

    expect(parseAclListNames(reply)).toEqual({ names: ['alice'], undecodable: 1 });
  });

  it.each([
    ['not an array', 'OK'],
    ['an entry that is not a user', entries('role alice on')],
    ['a decoded string entry', ['user alice on']],
  ])('rejects %s', (_, reply) => {
    expect(() => parseAclListNames(reply)).toThrow(UnexpectedAclReplyError);
  });
});

describe('parseAclGetUserEnabled', () => {
  const reply = (flags: string[]): unknown[] => ['flags', flags, 'passwords', [], 'commands', '+@all', 'keys', '~*', 'channels', '', 'selectors', []];

  it('reads the on/off flag, and a missing user as undefined', () => {
    expect(parseAclGetUserEnabled('alice', reply(['on', 'sanitize-payload']))).toBe(true);
    expect(parseAclGetUserEnabled('alice', reply(['off', 'nopass']))).toBe(false);
    expect(parseAclGetUserEnabled('ghost', null)).toBeUndefined();
  });

  it('does not take a value for the flags key', () => {
    // A key list whose *value* is "flags" (here: commands) must not be read as the key.
    const odd = ['commands', 'flags', 'passwords', []];
    expect(() => parseAclGetUserEnabled('alice', odd)).toThrow(UnexpectedAclReplyError);
  });

  it.each([
    ['no flags', reply([])],
    ['a map instead of RESP2 pairs', { flags: ['on'] }],
  ])('rejects %s', (_, odd) => {
    expect(() => parseAclGetUserEnabled('alice', odd)).toThrow(UnexpectedAclReplyError);
  });
});
