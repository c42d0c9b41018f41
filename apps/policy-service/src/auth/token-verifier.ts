import { createSecretKey, type KeyObject } from 'node:crypto';
import { decode, JsonWebTokenError, NotBeforeError, TokenExpiredError, verify, type Jwt, type JwtPayload } from 'jsonwebtoken';
import { hasLoneSurrogate, UNSAFE_IN_IDENTITY } from '../common/text';
import { AuthenticationFailure, unverifiedText } from './credentials';
import type { JwksAlgorithm } from './identity.config';
import type { ResolvedKey } from './jwks-key-resolver';
import { ROLES, type Principal, type Role } from './roles';

export interface KeyResolver {
  resolve(kid: string): Promise<ResolvedKey | null>;
}

export interface TokenVerifierOptions {
  /** Local HS256 tokens (`npm run token`); null when JWT_SECRET is not set. */
  local: { secret: string; issuer: string; audience: string } | null;
  /** Tokens of the identity provider; null without single sign-on. */
  sso: {
    keys: KeyResolver;
    issuer: string;
    audience: string[];
    algorithms: readonly JwksAlgorithm[];
    rolesClaim: string;
    subjectClaim: string;
  } | null;
  clockToleranceSeconds: number;
  /** The longest a token may still be valid for (`exp` − now), whoever issued it: a leaked token is bounded. */
  maxLifetimeSeconds: number;
}

const MAX_SUBJECT_LENGTH = 200;

/**
 * Verifies a bearer JWT and turns it into a Principal.
 *
 * Which key verifies a token is decided by the token's header `kid`, never by its `alg`:
 * - with a `kid`: an identity provider token. The key comes from the provider's JWKS (public keys only)
 *   and the algorithm is pinned to that key's own (RS256 for RSA keys, ES256 for P-256 keys) and to
 *   `OIDC_ALGORITHMS`. `alg: none`, HS256 (a JWKS public key misused as an HMAC secret) or an RSA
 *   key named by an ES256 token cannot pass.
 * - without a `kid`: a local token (`npm run token`), verified with JWT_SECRET and HS256 only. A
 *   provider's token always names its key, and ours never does, so the two never meet the other's key;
 *   an attacker who removes the `kid` of a provider token only sends it to the HS256 check, where it fails.
 * Both check signature, issuer, audience, expiry (`exp` is required) and `nbf`, with the configured leeway.
 */
export class TokenVerifier {
  /** JWT_SECRET as a KeyObject made once: given a string, jsonwebtoken builds a key object on every call. */
  private readonly localKey: KeyObject | null;

  constructor(private readonly options: TokenVerifierOptions) {
    this.localKey = options.local ? createSecretKey(Buffer.from(options.local.secret, 'utf8')) : null;
  }

  async verify(token: string): Promise<Principal> {
    const decoded = decode(token, { complete: true }) as Jwt | null;
    if (!decoded || typeof decoded.payload !== 'object' || decoded.payload === null) {
      throw new AuthenticationFailure('malformed token', { credential: 'jwt' });
    }
    const header = decoded.header as Jwt['header'] & { kid?: unknown };
    return header.kid !== undefined
      ? this.verifySso(token, header.alg, header.kid, decoded.payload)
      : this.verifyLocal(token, decoded.payload);
  }

  private verifyLocal(token: string, unverified: JwtPayload): Principal {
    const local = this.options.local;
    const unverifiedSubject = unverifiedText(unverified.sub);
    if (!local) {
      throw new AuthenticationFailure('token names no signing key (kid) and local tokens are disabled (no JWT_SECRET)', {
        credential: 'jwt',
        unverifiedSubject,
      });
    }
    const claims = this.check(token, this.localKey!, {
      algorithms: ['HS256'],
      issuer: local.issuer,
      audience: [local.audience],
      unverifiedSubject,
    });
    return { sub: subject(claims.sub, unverifiedSubject), roles: roles(claims.roles), via: 'local-token' };
  }

  private async verifySso(token: string, alg: string, kid: unknown, unverified: JwtPayload): Promise<Principal> {
    const sso = this.options.sso;
    const unverifiedSubject = unverifiedText(sso ? claim(unverified, sso.subjectClaim) : unverified.sub);
    const fail = (reason: string): never => {
      throw new AuthenticationFailure(reason, { credential: 'jwt', unverifiedSubject });
    };
    if (!sso) return fail('token names a signing key (kid) but single sign-on is not configured (no OIDC_JWKS_URL)');
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > 256) return fail('malformed key id (kid)');
    if (!(sso.algorithms as readonly string[]).includes(alg)) {
      return fail(`algorithm ${unverifiedText(alg, 20) ?? '(none)'} not accepted for identity provider tokens`);
    }
    const key = await sso.keys.resolve(kid);
    if (!key) return fail(`unknown signing key id "${unverifiedText(kid, 100)}"`);
    const claims = this.check(token, key.key, {
      algorithms: [key.algorithm],
      issuer: sso.issuer,
      audience: sso.audience,
      unverifiedSubject,
    });
    return { sub: subject(claim(claims, sso.subjectClaim), unverifiedSubject), roles: roles(claim(claims, sso.rolesClaim)), via: 'sso-token' };
  }

  private check(
    token: string,
    key: string | KeyObject,
    expected: { algorithms: ('HS256' | JwksAlgorithm)[]; issuer: string; audience: string[]; unverifiedSubject?: string },
  ): JwtPayload {
    let claims: string | JwtPayload;
    try {
      claims = verify(token, key, {
        algorithms: expected.algorithms,
        issuer: expected.issuer,
        audience: expected.audience as [string, ...string[]],
        clockTolerance: this.options.clockToleranceSeconds,
      });
    } catch (error) {
      throw failureFromJwtError(error, expected.unverifiedSubject);
    }
    if (typeof claims !== 'object' || claims === null) {
      throw new AuthenticationFailure('token payload is not a JSON object', { credential: 'jwt', unverifiedSubject: expected.unverifiedSubject });
    }
    // jsonwebtoken accepts a token without `exp` as valid forever; a bearer token that never expires is refused.
    if (typeof claims.exp !== 'number') {
      throw new AuthenticationFailure('token has no expiry (exp)', { credential: 'jwt', unverifiedSubject: expected.unverifiedSubject });
    }
    // Nor one that is valid for years (exp: 1e308): a stolen token would be a standing credential.
    const remaining = claims.exp - Date.now() / 1000;
    if (remaining > this.options.maxLifetimeSeconds + this.options.clockToleranceSeconds) {
      throw new AuthenticationFailure(`token valid for longer than the allowed ${this.options.maxLifetimeSeconds} s (JWT_MAX_LIFETIME_SECONDS)`, {
        credential: 'jwt',
        unverifiedSubject: expected.unverifiedSubject,
        publicMessage: 'token lifetime too long',
      });
    }
    return claims;
  }
}

function failureFromJwtError(error: unknown, unverifiedSubject: string | undefined): AuthenticationFailure {
  const make = (reason: string, publicMessage?: string) =>
    new AuthenticationFailure(reason, { credential: 'jwt', unverifiedSubject, publicMessage });
  if (error instanceof TokenExpiredError) return make('token expired', 'token expired');
  if (error instanceof NotBeforeError) return make('token not valid yet (nbf)');
  if (error instanceof JsonWebTokenError) {
    const message = error.message;
    if (message === 'invalid signature') return make('invalid signature');
    if (message.startsWith('jwt issuer invalid')) return make('wrong issuer');
    if (message.startsWith('jwt audience invalid')) return make('wrong audience');
    if (message === 'invalid algorithm') return make('algorithm not allowed');
    if (message === 'jwt signature is required') return make('unsigned token (alg none)');
    if (message === 'jwt malformed' || message === 'invalid token') return make('malformed token');
    return make(`invalid token (${unverifiedText(message, 100)})`);
  }
  return make(`invalid token (${unverifiedText((error as Error)?.message, 100) ?? 'unknown error'})`);
}

/** A claim by exact name, else (for names with dots, like `realm_access.roles`) by path. */
function claim(claims: JwtPayload, name: string): unknown {
  if (Object.prototype.hasOwnProperty.call(claims, name)) return claims[name];
  if (!name.includes('.')) return undefined;
  let value: unknown = claims;
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.prototype.hasOwnProperty.call(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function subject(value: unknown, unverifiedSubject: string | undefined): string {
  // A subject is compared as given (four eyes: the approver must not be the requester) and stored, so it must be
  // text that is stored as given: a lone surrogate would be recorded as U+FFFD, and "eve\uD800" would then
  // approve the request of the recorded "eve\uFFFD", its own. Controls and bidi overrides would spoof the history.
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > MAX_SUBJECT_LENGTH ||
    UNSAFE_IN_IDENTITY.test(value) ||
    hasLoneSurrogate(value)
  ) {
    throw new AuthenticationFailure('token has no usable subject', { credential: 'jwt', unverifiedSubject });
  }
  // `apikey:` subjects are those of API keys; a token must not be able to act as one in the history.
  if (value.startsWith('apikey:')) {
    throw new AuthenticationFailure('token subject uses the reserved "apikey:" prefix', { credential: 'jwt', unverifiedSubject });
  }
  return value;
}

/** Known role names, from an array of strings or a space/comma-separated string; anything else is ignored. */
export function roles(value: unknown): Role[] {
  const names = Array.isArray(value) ? value : typeof value === 'string' ? value.split(/[\s,]+/) : [];
  return [...new Set(names.filter((role): role is Role => (ROLES as readonly unknown[]).includes(role)))];
}
