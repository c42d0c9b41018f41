/**
 * Settings of identity (single sign-on, API keys), rate limits and proxies, read from the environment.
 * Kept apart from policy-service.config.ts so that file only wires them in; every problem is collected,
 * never thrown one at a time, and no value of a secret is ever echoed in a message.
 */

/** The only algorithms an identity provider's tokens may use. HS* and `none` are never accepted from a JWKS. */
export const JWKS_ALGORITHMS = ['RS256', 'ES256'] as const;
export type JwksAlgorithm = (typeof JWKS_ALGORITHMS)[number];

/** Tokens signed by an identity provider (OpenID Connect), verified against its published JWKS. */
export interface OidcConfig {
  /** `OIDC_JWKS_URL`: https (http only for a loopback host). */
  jwksUrl: string;
  /** `OIDC_ISSUER`: the exact `iss` of its tokens. */
  issuer: string;
  /** `OIDC_AUDIENCE`: accepted `aud` values (comma-separated); a token must name one of them. */
  audience: string[];
  /** `OIDC_ALGORITHMS`: a subset of RS256, ES256 (default both). */
  algorithms: JwksAlgorithm[];
  /** `OIDC_ROLES_CLAIM` (default `roles`): an array of role names, or a space/comma-separated string. A dotted path (`realm_access.roles`) is followed when no claim has that exact name. */
  rolesClaim: string;
  /** `OIDC_SUBJECT_CLAIM` (default `sub`): the claim that names the person in the audit history. */
  subjectClaim: string;
  /** `OIDC_JWKS_REFETCH_INTERVAL_SECONDS` (default 30): an unknown `kid` fetches the JWKS again at most this often. */
  jwksRefetchIntervalSeconds: number;
  /** `OIDC_JWKS_MAX_AGE_SECONDS` (default 600): keys are refreshed in the background once the copy is this old. */
  jwksMaxAgeSeconds: number;
  /** `OIDC_JWKS_TIMEOUT_MS` (default 5000): the whole fetch of the JWKS. */
  jwksTimeoutMs: number;
}

export interface IdentityConfig {
  /** `JWT_CLOCK_TOLERANCE_SECONDS` (default 30): leeway on `exp` and `nbf` of every token. */
  clockToleranceSeconds: number;
  /** `JWT_MAX_LIFETIME_SECONDS` (default 86400, one day): a token valid for longer than this from now is refused. */
  maxTokenLifetimeSeconds: number;
  /** Single sign-on; null when `OIDC_JWKS_URL` is not set (local HS256 tokens only). */
  oidc: OidcConfig | null;
  /** `API_KEY_LAST_USED_INTERVAL_SECONDS` (default 60): an API key's `last_used_at` is written at most this often. */
  apiKeyLastUsedIntervalSeconds: number;
}

/** Limits per source address (failed authentications) and per caller (sensitive routes). */
export interface RateLimitConfig {
  /** `AUTH_FAILURE_LIMIT` (default 10): failed authentications from one address per window before it gets 429. */
  authFailureLimit: number;
  /** `AUTH_FAILURE_WINDOW_SECONDS` (default 60). */
  authFailureWindowSeconds: number;
  /** `AUTH_FAILURE_AUDIT_WINDOW_SECONDS` (default 60): failures from one address are written to the audit history once per window, the rest as one summary. */
  authFailureAuditWindowSeconds: number;
  /** `SENSITIVE_RATE_LIMIT` (default 30): calls of a sensitive route (API keys, approvals) per caller per window. */
  sensitiveLimit: number;
  /** `SENSITIVE_RATE_LIMIT_WINDOW_SECONDS` (default 60). */
  sensitiveWindowSeconds: number;
}

/**
 * Express `trust proxy` (`HTTP_TRUST_PROXY`): `false` (default; the peer address is the client), a number of
 * proxy hops, or addresses/subnets/presets (`loopback`, `10.0.0.0/8`). Never "trust everything": a client
 * could then pick its own address in X-Forwarded-For and escape the per-address limits.
 */
export type TrustProxySetting = false | number | string;

export interface IdentitySettings {
  identity: IdentityConfig;
  rateLimits: RateLimitConfig;
  trustProxy: TrustProxySetting;
}

type Env = NodeJS.ProcessEnv;

function integer(env: Env, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer between ${min} and ${max}, not "${raw}"`);
    return fallback;
  }
  return value;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function jwksUrl(raw: string, problems: string[]): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    problems.push('OIDC_JWKS_URL must be a URL');
    return raw;
  }
  if (url.username || url.password) problems.push('OIDC_JWKS_URL must not contain credentials');
  else if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    problems.push('OIDC_JWKS_URL must be an https:// URL (http:// only for localhost)');
  }
  return url.toString();
}

function list(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function oidcConfig(env: Env, problems: string[]): OidcConfig | null {
  const rawUrl = env.OIDC_JWKS_URL?.trim();
  if (!rawUrl) {
    const orphans = ['OIDC_ISSUER', 'OIDC_AUDIENCE'].filter((name) => env[name]);
    if (orphans.length) problems.push(`${orphans.join(' and ')} set without OIDC_JWKS_URL`);
    return null;
  }
  const issuer = env.OIDC_ISSUER?.trim() ?? '';
  if (!issuer) problems.push('OIDC_ISSUER is required with OIDC_JWKS_URL (the exact "iss" of the identity provider\'s tokens)');
  const audience = list(env.OIDC_AUDIENCE);
  // Without an audience check, any token the provider issued for any other application would get in.
  if (audience.length === 0) problems.push('OIDC_AUDIENCE is required with OIDC_JWKS_URL (the "aud" tokens for Portcullis carry)');
  const algorithms = env.OIDC_ALGORITHMS ? list(env.OIDC_ALGORITHMS) : [...JWKS_ALGORITHMS];
  const unsupported = algorithms.filter((alg) => !(JWKS_ALGORITHMS as readonly string[]).includes(alg));
  if (algorithms.length === 0 || unsupported.length) {
    problems.push(`OIDC_ALGORITHMS must list some of ${JWKS_ALGORITHMS.join(', ')}${unsupported.length ? ` (not ${unsupported.join(', ')})` : ''}`);
  }
  const claim = (name: string, fallback: string) => {
    const value = env[name]?.trim() || fallback;
    if (value.length > 200) problems.push(`${name} must be at most 200 characters`);
    return value;
  };
  return {
    jwksUrl: jwksUrl(rawUrl, problems),
    issuer,
    audience,
    algorithms: [...new Set(algorithms)] as JwksAlgorithm[],
    rolesClaim: claim('OIDC_ROLES_CLAIM', 'roles'),
    subjectClaim: claim('OIDC_SUBJECT_CLAIM', 'sub'),
    jwksRefetchIntervalSeconds: integer(env, 'OIDC_JWKS_REFETCH_INTERVAL_SECONDS', 30, 1, 86400, problems),
    jwksMaxAgeSeconds: integer(env, 'OIDC_JWKS_MAX_AGE_SECONDS', 600, 10, 7 * 86400, problems),
    jwksTimeoutMs: integer(env, 'OIDC_JWKS_TIMEOUT_MS', 5000, 100, 60000, problems),
  };
}

const TRUST_PROXY_PRESETS = new Set(['loopback', 'linklocal', 'uniquelocal']);

function trustProxy(env: Env, problems: string[]): TrustProxySetting {
  const raw = env.HTTP_TRUST_PROXY?.trim() ?? '';
  if (raw === '' || raw === 'false') return false;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops < 1 || hops > 10) problems.push('HTTP_TRUST_PROXY as a hop count must be between 1 and 10');
    return hops;
  }
  const entries = list(raw);
  const bad = entries.filter((entry) => !TRUST_PROXY_PRESETS.has(entry) && !/^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(entry));
  if (raw === 'true' || entries.length === 0 || bad.length) {
    problems.push(
      'HTTP_TRUST_PROXY must be false, a number of proxy hops, or proxy addresses/subnets/presets (loopback, linklocal, uniquelocal); "true" would let any client choose its address',
    );
    return false;
  }
  return entries.join(',');
}

/** Reads the identity settings; problems are added to `problems` (the caller reports them all at once). */
export function loadIdentitySettings(env: Env, problems: string[]): IdentitySettings {
  return {
    identity: {
      clockToleranceSeconds: integer(env, 'JWT_CLOCK_TOLERANCE_SECONDS', 30, 0, 300, problems),
      maxTokenLifetimeSeconds: integer(env, 'JWT_MAX_LIFETIME_SECONDS', 86400, 60, 31_536_000, problems),
      oidc: oidcConfig(env, problems),
      apiKeyLastUsedIntervalSeconds: integer(env, 'API_KEY_LAST_USED_INTERVAL_SECONDS', 60, 1, 86400, problems),
    },
    rateLimits: {
      authFailureLimit: integer(env, 'AUTH_FAILURE_LIMIT', 10, 1, 1_000_000, problems),
      authFailureWindowSeconds: integer(env, 'AUTH_FAILURE_WINDOW_SECONDS', 60, 1, 86400, problems),
      authFailureAuditWindowSeconds: integer(env, 'AUTH_FAILURE_AUDIT_WINDOW_SECONDS', 60, 1, 86400, problems),
      sensitiveLimit: integer(env, 'SENSITIVE_RATE_LIMIT', 30, 1, 1_000_000, problems),
      sensitiveWindowSeconds: integer(env, 'SENSITIVE_RATE_LIMIT_WINDOW_SECONDS', 60, 1, 86400, problems),
    },
    trustProxy: trustProxy(env, problems),
  };
}
