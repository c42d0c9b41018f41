import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { sign } from 'jsonwebtoken';
import { AuthenticationFailure } from './credentials';
import type { ResolvedKey } from './jwks-key-resolver';
import { roles, TokenVerifier } from './token-verifier';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const secret = 'a-local-secret-of-at-least-32-characters!';
const keys: Record<string, ResolvedKey> = {
  r1: { kid: 'r1', algorithm: 'RS256', key: rsa.publicKey },
  e1: { kid: 'e1', algorithm: 'ES256', key: ec.publicKey },
};

const verifier = (overrides: { local?: boolean; sso?: boolean; rolesClaim?: string; subjectClaim?: string } = {}) =>
  new TokenVerifier({
    local: overrides.local === false ? null : { secret, issuer: 'portcullis-local', audience: 'portcullis' },
    sso:
      overrides.sso === false
        ? null
        : {
            keys: { resolve: async (kid: string) => keys[kid] ?? null },
            issuer: 'https://idp.example',
            audience: ['portcullis-api'],
            algorithms: ['RS256', 'ES256'],
            rolesClaim: overrides.rolesClaim ?? 'roles',
            subjectClaim: overrides.subjectClaim ?? 'sub',
          },
    clockToleranceSeconds: 5,
    maxLifetimeSeconds: 3600,
  });

/** An identity provider's token; `expiresIn: null` leaves `exp` to the claims (or out). */
const idp = (key: KeyObject, algorithm: 'RS256' | 'ES256', kid: string, claims: Record<string, unknown> = {}, options: Record<string, unknown> = {}) => {
  const merged: Record<string, unknown> = {
    algorithm,
    keyid: kid,
    subject: 'alice@example.com',
    issuer: 'https://idp.example',
    audience: 'portcullis-api',
    expiresIn: '5m',
    ...options,
  };
  if (merged.expiresIn === null) delete merged.expiresIn;
  return sign({ roles: ['security-lead'], ...claims }, key, merged);
};
const local = (claims: Record<string, unknown> = {}, options: object = {}) =>
  sign({ roles: ['auditor'], ...claims }, secret, { subject: 'audrey', issuer: 'portcullis-local', audience: 'portcullis', expiresIn: '5m', ...options });
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AuthenticationFailure) return error.reason;
    throw error;
  }
  throw new Error('expected an AuthenticationFailure');
}

describe('TokenVerifier', () => {
  it('accepts identity provider tokens signed with RS256 and ES256 keys of the JWKS', async () => {
    await expect(verifier().verify(idp(rsa.privateKey, 'RS256', 'r1'))).resolves.toEqual({
      sub: 'alice@example.com',
      roles: ['security-lead'],
      via: 'sso-token',
    });
    await expect(verifier().verify(idp(ec.privateKey, 'ES256', 'e1', { roles: ['auditor', 'admin'] }))).resolves.toMatchObject({
      roles: ['auditor', 'admin'],
    });
  });

  it('still accepts local HS256 tokens (no kid)', async () => {
    await expect(verifier().verify(local())).resolves.toEqual({ sub: 'audrey', roles: ['auditor'], via: 'local-token' });
  });

  it('accepts a token valid for exactly the longest lifetime allowed', async () => {
    await expect(verifier().verify(local({}, { expiresIn: 3600 }))).resolves.toMatchObject({ sub: 'audrey' });
    await expect(verifier().verify(idp(rsa.privateKey, 'RS256', 'r1', {}, { expiresIn: 3600 }))).resolves.toMatchObject({ via: 'sso-token' });
  });

  it.each([
    ['a wrong issuer', () => idp(rsa.privateKey, 'RS256', 'r1', {}, { issuer: 'https://evil.example' }), 'wrong issuer'],
    ['a wrong audience', () => idp(rsa.privateKey, 'RS256', 'r1', {}, { audience: 'another-app' }), 'wrong audience'],
    ['an expired token', () => idp(rsa.privateKey, 'RS256', 'r1', { exp: Math.floor(Date.now() / 1000) - 60 }, { expiresIn: null }), 'token expired'],
    ['no expiry', () => idp(rsa.privateKey, 'RS256', 'r1', {}, { expiresIn: null }), 'token has no expiry (exp)'],
    ['a provider token valid for ever', () => idp(rsa.privateKey, 'RS256', 'r1', { exp: 1e308 }, { expiresIn: null }), 'token valid for longer than the allowed 3600 s (JWT_MAX_LIFETIME_SECONDS)'],
    ['a local token valid beyond the limit', () => local({}, { expiresIn: 3600 + 60 }), 'token valid for longer than the allowed 3600 s (JWT_MAX_LIFETIME_SECONDS)'],
    ['an unknown kid', () => idp(rsa.privateKey, 'RS256', 'nope'), 'unknown signing key id "nope"'],
    ['the key of another kid', () => idp(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256', 'r1'), 'invalid signature'],
    ['ES256 naming an RSA key', () => idp(ec.privateKey, 'ES256', 'r1'), 'algorithm not allowed'],
  ])('refuses %s', async (_case, token, expected) => {
    expect(await reason(verifier().verify(token()))).toBe(expected);
  });

  it('refuses a tampered payload', async () => {
    const [header, , signature] = idp(rsa.privateKey, 'RS256', 'r1').split('.');
    const forged = `${header}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: 'https://idp.example', aud: 'portcullis-api', exp: 9999999999 })}.${signature}`;
    expect(await reason(verifier().verify(forged))).toBe('invalid signature');
  });

  it('refuses alg none, with or without a kid', async () => {
    const claims = { sub: 'mallory', roles: ['admin'], iss: 'portcullis-local', aud: 'portcullis', exp: 9999999999 };
    expect(await reason(verifier().verify(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`))).toMatch(/unsigned|algorithm/);
    expect(await reason(verifier().verify(`${b64({ alg: 'none', kid: 'r1' })}.${b64({ ...claims, iss: 'https://idp.example', aud: 'portcullis-api' })}.`))).toBe(
      'algorithm none not accepted for identity provider tokens',
    );
  });

  it('refuses HS256 signed with the public key of the JWKS (key confusion), with or without its kid', async () => {
    const pem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const hs = (header: object) => {
      const body = `${b64(header)}.${b64({ sub: 'mallory', roles: ['admin'], iss: 'https://idp.example', aud: 'portcullis-api', exp: 9999999999 })}`;
      return `${body}.${createHmac('sha256', pem).update(body).digest('base64url')}`;
    };
    expect(await reason(verifier().verify(hs({ alg: 'HS256', kid: 'r1' })))).toBe('algorithm HS256 not accepted for identity provider tokens');
    expect(await reason(verifier().verify(hs({ alg: 'HS256' })))).toBe('invalid signature');
  });

  it('refuses a local token once JWT_SECRET is not configured, and a kid without single sign-on', async () => {
    expect(await reason(verifier({ local: false }).verify(local()))).toMatch(/local tokens are disabled/);
    expect(await reason(verifier({ sso: false }).verify(idp(rsa.privateKey, 'RS256', 'r1')))).toMatch(/single sign-on is not configured/);
  });

  it('reports the claimed subject of a refused token as unverified', async () => {
    try {
      await verifier().verify(idp(rsa.privateKey, 'RS256', 'r1', {}, { audience: 'x' }));
      throw new Error('accepted');
    } catch (error) {
      expect((error as AuthenticationFailure).details.unverifiedSubject).toBe('alice@example.com');
    }
  });

  it('reads roles and subject from configured claims, nested ones by path', async () => {
    const token = idp(rsa.privateKey, 'RS256', 'r1', { realm_access: { roles: ['auditor', 'offline_access'] }, preferred_username: 'alice' });
    await expect(verifier({ rolesClaim: 'realm_access.roles', subjectClaim: 'preferred_username' }).verify(token)).resolves.toMatchObject({
      sub: 'alice',
      roles: ['auditor'],
    });
  });

  it('refuses a subject that would pass for an API key', async () => {
    expect(await reason(verifier().verify(idp(rsa.privateKey, 'RS256', 'r1', {}, { subject: 'apikey:0123456789abcdef' })))).toMatch(/apikey/);
  });

  // A lone surrogate is stored as U+FFFD: "eve\uD800" would approve the recorded "eve\uFFFD", its own request.
  it.each([
    ['a lone high surrogate', 'eve\ud800'],
    ['a lone low surrogate', '\udc00eve'],
    ['a C1 control', 'a\u0085b'],
    ['a right-to-left override', 'ali\u202ece'],
    ['an isolate', 'bob\u2066x\u2069'],
    ['a line separator', 'carol\u2028'],
    ['an invisible direction mark', 'alice\u200e'],
    ['a zero-width space', 'al\u200bice'],
    ['a byte order mark', '\ufeffalice'],
  ])('refuses a subject with %s, from either kind of token', async (_what, subject) => {
    expect(await reason(verifier().verify(idp(rsa.privateKey, 'RS256', 'r1', {}, { subject })))).toBe('token has no usable subject');
    expect(await reason(verifier().verify(local({}, { subject })))).toBe('token has no usable subject');
  });

  it('accepts subjects in any script, with characters outside the BMP (paired surrogates)', async () => {
    for (const subject of ['josé@example.com', 'محمد', '山田太郎', 'ops-\u{1F512}']) {
      await expect(verifier().verify(local({}, { subject }))).resolves.toMatchObject({ sub: subject });
    }
  });
});

describe('roles', () => {
  it('keeps known roles from an array or a space/comma-separated string, once each', () => {
    expect(roles(['admin', 'root', 'auditor', 'admin', 7])).toEqual(['admin', 'auditor']);
    expect(roles('security-lead auditor,admin')).toEqual(['security-lead', 'auditor', 'admin']);
    expect(roles(undefined)).toEqual([]);
    expect(roles({ admin: true })).toEqual([]);
  });
});
