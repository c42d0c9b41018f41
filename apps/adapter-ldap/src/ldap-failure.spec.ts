import {
  BusyError,
  ConfidentialityRequiredError,
  ConstraintViolationError,
  InsufficientAccessError,
  InvalidCredentialsError,
  NoResultError,
  NoSuchObjectError,
  SizeLimitExceededError,
  UnavailableError,
  UnwillingToPerformError,
} from 'ldapts';
import { classifyLdapFailure } from './ldap-failure';

describe('classifyLdapFailure', () => {
  it.each([
    ['busy', new BusyError('server busy'), 51],
    ['unavailable', new UnavailableError('shutting down'), 52],
    ['noResult', new NoResultError(), 248],
  ])('treats %s as retriable', (name, error, code) => {
    const failure = classifyLdapFailure(error);
    expect(failure.outcome).toBe('failed-retriable');
    expect(failure.detail).toMatch(new RegExp(`^${name} \\(LDAP result ${code}\\)`));
  });

  it('treats a lock that changed under a conditional write as retriable and says so', () => {
    expect(classifyLdapFailure(new ConstraintViolationError("attribute 'pwdAccountLockedTime' cannot have multiple values"))).toEqual({
      outcome: 'failed-retriable',
      detail:
        `constraintViolation (LDAP result 19) "attribute 'pwdAccountLockedTime' cannot have multiple values": ` +
        'the lock of the account changed while the adapter changed it; the retry reads it again',
    });
  });

  it('treats refused credentials as permanent, without the client library\'s code suffix', () => {
    expect(classifyLdapFailure(new InvalidCredentialsError(''))).toEqual({
      outcome: 'failed-permanent',
      detail:
        "invalidCredentials (LDAP result 49): check bindDn and bindPassword of the system, and that the adapter's own account is not locked",
    });
  });

  it('treats a missing privilege as permanent and says which access the adapter needs', () => {
    const failure = classifyLdapFailure(new InsufficientAccessError('no write access to parent'));
    expect(failure.outcome).toBe('failed-permanent');
    expect(failure.detail).toMatch(/^insufficientAccessRights \(LDAP result 50\) "no write access to parent": .*write access to pwdAccountLockedTime/);
  });

  it.each([
    ['noSuchObject', new NoSuchObjectError(''), /^noSuchObject \(LDAP result 32\): check baseDn/],
    ['sizeLimitExceeded', new SizeLimitExceededError(''), /^sizeLimitExceeded \(LDAP result 4\): .*size=unlimited/],
    ['confidentialityRequired', new ConfidentialityRequiredError(''), /^confidentialityRequired \(LDAP result 13\): .*ldaps:\/\//],
    ['unwillingToPerform', new UnwillingToPerformError('shadow context; no update referral'), /read-only replica/],
  ])('treats %s as permanent with a hint', (_name, error, detail) => {
    const failure = classifyLdapFailure(error);
    expect(failure.outcome).toBe('failed-permanent');
    expect(failure.detail).toMatch(detail);
  });

  it('treats network and client errors without a result code as retriable', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:389'), { code: 'ECONNREFUSED' });
    expect(classifyLdapFailure(refused)).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.5:389' });
    expect(classifyLdapFailure(new Error('Connection timeout')).outcome).toBe('failed-retriable');
    expect(classifyLdapFailure(new Error('SearchRequest: Operation timed out')).outcome).toBe('failed-retriable');
  });
});
