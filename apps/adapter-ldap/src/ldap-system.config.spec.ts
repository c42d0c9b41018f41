import { LdapSystemConfigSchema } from './ldap-system.config';

const required = {
  url: 'ldaps://ldap.example.org:636',
  bindDn: 'cn=portcullis,ou=services,dc=example,dc=org',
  bindPassword: 'secret',
  baseDn: 'ou=people,dc=example,dc=org',
};

function problems(input: unknown): string[] {
  const result = LdapSystemConfigSchema.safeParse(input);
  return result.success ? [] : result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

describe('LdapSystemConfigSchema', () => {
  it('applies defaults', () => {
    expect(LdapSystemConfigSchema.parse(required)).toEqual({
      ...required,
      accountFilter: '(objectClass=inetOrgPerson)',
      principalAttribute: 'uid',
      connectTimeoutMs: 5_000,
      operationTimeoutMs: 15_000,
    });
  });

  it('accepts an operator-written filter and another principal attribute', () => {
    const config = { ...required, accountFilter: '(&(objectClass=posixAccount)(!(uid=svc-*)))', principalAttribute: 'mail' };
    expect(problems(config)).toEqual([]);
  });

  it.each([
    [{ url: 'http://ldap.example.org' }, 'url: must be an ldap:// or ldaps:// URL of a host and port'],
    [{ url: 'ldap://ldap.example.org/dc=example,dc=org??sub' }, 'url: must be an ldap:// or ldaps:// URL of a host and port'],
    [{ accountFilter: '(objectClass=person' }, 'accountFilter: must be an RFC 4515 filter, e.g. (objectClass=inetOrgPerson)'],
    [{ principalAttribute: 'uid)(cn=*' }, 'principalAttribute: must be an attribute type name or OID'],
    [{ bindPassword: '' }, 'bindPassword: Too small: expected string to have >=1 characters'],
  ])('rejects %j', (override, problem) => {
    expect(problems({ ...required, ...override })).toEqual([problem]);
  });
});
