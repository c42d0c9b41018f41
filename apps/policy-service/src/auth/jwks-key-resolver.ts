import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { JwksAlgorithm } from './identity.config';

/** A verification key of the identity provider and the one algorithm it may be used with. */
export interface ResolvedKey {
  kid: string;
  algorithm: JwksAlgorithm;
  key: KeyObject;
}

export interface JwksKeyResolverOptions {
  url: string;
  /** Algorithms accepted at all; keys for anything else are ignored. */
  algorithms: readonly JwksAlgorithm[];
  /** An unknown `kid` fetches the JWKS again at most this often (a stream of made-up kids cannot hammer the provider). */
  refetchIntervalMs: number;
  /** Once the copy is this old, the next use refreshes it in the background (rotated-out keys go away). */
  maxAgeMs: number;
  /** Limit on the whole fetch (connect, headers, body). */
  timeoutMs: number;
  fetch?: typeof fetch;
  now?: () => number;
  onError?: (message: string) => void;
}

/** A JWKS document is small; anything bigger is refused rather than buffered. */
const MAX_JWKS_BYTES = 512 * 1024;
const MAX_KEYS = 100;
const MIN_RSA_BITS = 2048;

/**
 * Resolves a token's `kid` to a public KeyObject from the identity provider's JWKS, cached by `kid`.
 *
 * - Only RSA keys (for RS256, ≥ 2048 bits) and EC P-256 keys (for ES256) among the configured
 *   algorithms are taken; symmetric (`oct`) keys, encryption keys and keys without `kid` are ignored,
 *   so a JWKS key can never become an HMAC secret.
 * - An unknown `kid` refetches the JWKS, but at most once per `refetchIntervalMs`; concurrent lookups
 *   share one fetch.
 * - A failed fetch keeps the keys already known (an identity provider outage does not log everyone out);
 *   keys are only dropped when a successful fetch no longer lists them.
 */
export class JwksKeyResolver {
  private keys = new Map<string, ResolvedKey>();
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private attemptedAt = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<void> | null = null;
  private readonly fetchFn: typeof fetch;
  private readonly now: () => number;

  constructor(private readonly options: JwksKeyResolverOptions) {
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.now = options.now ?? Date.now;
  }

  /** The key for `kid`, or null when the provider does not (or, within the refetch interval, did not) publish it. */
  async resolve(kid: string): Promise<ResolvedKey | null> {
    const known = this.keys.get(kid);
    if (known) {
      if (this.now() - this.fetchedAt >= this.options.maxAgeMs) this.refreshInBackground();
      return known;
    }
    if (this.inFlight) {
      await this.inFlight;
    } else if (this.now() - this.attemptedAt >= this.options.refetchIntervalMs) {
      await this.refresh();
    }
    return this.keys.get(kid) ?? null;
  }

  /** Fetches the JWKS now (at start); failures are reported, not thrown. */
  async warmUp(): Promise<void> {
    await this.refresh();
  }

  /** Number of usable keys currently held (for tests and diagnostics). */
  get size(): number {
    return this.keys.size;
  }

  private refreshInBackground(): void {
    if (this.inFlight || this.now() - this.attemptedAt < this.options.refetchIntervalMs) return;
    void this.refresh();
  }

  private refresh(): Promise<void> {
    if (!this.inFlight) {
      this.attemptedAt = this.now();
      this.inFlight = this.fetchKeys()
        .then((keys) => {
          this.keys = keys;
          this.fetchedAt = this.now();
        })
        .catch((error: unknown) => {
          this.options.onError?.(`JWKS fetch from ${this.options.url} failed: ${(error as Error).message}`);
        })
        .finally(() => {
          this.inFlight = null;
        });
    }
    return this.inFlight;
  }

  private async fetchKeys(): Promise<Map<string, ResolvedKey>> {
    const response = await this.fetchFn(this.options.url, {
      headers: { accept: 'application/jwk-set+json, application/json' },
      // A redirect could point anywhere (or downgrade to http): the configured URL must be the JWKS itself.
      redirect: 'error',
      signal: AbortSignal.timeout(this.options.timeoutMs),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const length = Number(response.headers.get('content-length') ?? 0);
    if (length > MAX_JWKS_BYTES) throw new Error(`JWKS larger than ${MAX_JWKS_BYTES} bytes`);
    const text = await response.text();
    if (text.length > MAX_JWKS_BYTES) throw new Error(`JWKS larger than ${MAX_JWKS_BYTES} bytes`);
    return parseJwks(JSON.parse(text), this.options.algorithms);
  }
}

/** The usable verification keys of a JWKS document, by `kid`. Unusable entries are skipped, never fatal. */
export function parseJwks(document: unknown, algorithms: readonly JwksAlgorithm[]): Map<string, ResolvedKey> {
  const entries = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(entries)) throw new Error('not a JWKS: no "keys" array');
  const keys = new Map<string, ResolvedKey>();
  const duplicates = new Set<string>();
  for (const entry of entries.slice(0, MAX_KEYS)) {
    const resolved = toResolvedKey(entry, algorithms);
    if (!resolved) continue;
    if (keys.has(resolved.kid)) duplicates.add(resolved.kid);
    keys.set(resolved.kid, resolved);
  }
  // Two keys under one kid: which one signed a token is ambiguous, so neither is trusted.
  for (const kid of duplicates) keys.delete(kid);
  return keys;
}

function toResolvedKey(entry: unknown, algorithms: readonly JwksAlgorithm[]): ResolvedKey | null {
  if (typeof entry !== 'object' || entry === null) return null;
  const jwk = entry as JsonWebKey & { kid?: unknown; use?: unknown; alg?: unknown; key_ops?: unknown };
  if (typeof jwk.kid !== 'string' || jwk.kid.length === 0 || jwk.kid.length > 256) return null;
  if (jwk.use !== undefined && jwk.use !== 'sig') return null;
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return null;
  let algorithm: JwksAlgorithm;
  if (jwk.kty === 'RSA') algorithm = 'RS256';
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') algorithm = 'ES256';
  else return null; // oct (symmetric), OKP, other curves: never
  if (!algorithms.includes(algorithm)) return null;
  if (jwk.alg !== undefined && jwk.alg !== algorithm) return null;
  let key: KeyObject;
  try {
    // Only the public members: a JWKS that (wrongly) publishes private members still yields a public key.
    const members: JsonWebKey =
      algorithm === 'RS256' ? { kty: 'RSA', n: jwk.n, e: jwk.e } : { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
    key = createPublicKey({ key: members, format: 'jwk' });
  } catch {
    return null;
  }
  if (key.type !== 'public') return null;
  if (algorithm === 'RS256' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return null;
  return { kid: jwk.kid, algorithm, key };
}
