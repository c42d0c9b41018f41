import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { JwksKeyResolver, parseJwks } from './jwks-key-resolver';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const smallRsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
const jwk = (key: { publicKey: { export(o: { format: 'jwk' }): JsonWebKey } }, extra: Record<string, unknown>) => ({
  ...key.publicKey.export({ format: 'jwk' }),
  ...extra,
});

function fakeJwks(documents: unknown[]) {
  let calls = 0;
  const fetchFn = (async () => {
    const document = documents[Math.min(calls, documents.length - 1)];
    calls += 1;
    if (document instanceof Error) throw document;
    return new Response(JSON.stringify(document), { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { fetchFn, calls: () => calls };
}

describe('parseJwks', () => {
  it('takes RSA keys for RS256 and P-256 keys for ES256, by kid', () => {
    const keys = parseJwks({ keys: [jwk(rsa, { kid: 'r1', use: 'sig' }), jwk(ec, { kid: 'e1', alg: 'ES256' })] }, ['RS256', 'ES256']);
    expect(keys.get('r1')?.algorithm).toBe('RS256');
    expect(keys.get('e1')?.algorithm).toBe('ES256');
    expect(keys.get('r1')?.key.type).toBe('public');
  });

  it('ignores symmetric, encryption, other-curve, too-small, kid-less and mislabelled keys', () => {
    const keys = parseJwks(
      {
        keys: [
          { kty: 'oct', k: 'c2VjcmV0', kid: 'oct' },
          jwk(rsa, { kid: 'enc', use: 'enc' }),
          jwk(ec384, { kid: 'p384' }),
          jwk(smallRsa, { kid: 'small' }),
          jwk(rsa, {}),
          jwk(rsa, { kid: 'hs', alg: 'HS256' }),
          jwk(rsa, { kid: 'no-verify', key_ops: ['encrypt'] }),
          'not a key',
          null,
        ],
      },
      ['RS256', 'ES256'],
    );
    expect([...keys.keys()]).toEqual([]);
  });

  it('only keeps keys of the configured algorithms', () => {
    const keys = parseJwks({ keys: [jwk(rsa, { kid: 'r1' }), jwk(ec, { kid: 'e1' })] }, ['ES256']);
    expect([...keys.keys()]).toEqual(['e1']);
  });

  it('trusts neither key when two share a kid', () => {
    const keys = parseJwks({ keys: [jwk(rsa, { kid: 'same' }), jwk(ec, { kid: 'same' }), jwk(ec, { kid: 'other' })] }, ['RS256', 'ES256']);
    expect([...keys.keys()]).toEqual(['other']);
  });

  it('refuses a document without a keys array', () => {
    expect(() => parseJwks({ nope: [] }, ['RS256'])).toThrow(/keys/);
  });
});

describe('JwksKeyResolver', () => {
  let now = 0;
  const options = (fetchFn: typeof fetch) => ({
    url: 'https://idp.example/jwks',
    algorithms: ['RS256', 'ES256'] as const,
    refetchIntervalMs: 30_000,
    maxAgeMs: 600_000,
    timeoutMs: 1000,
    fetch: fetchFn,
    now: () => now,
  });

  beforeEach(() => {
    now = 1_000_000;
  });

  it('fetches once and then serves known kids from the cache', async () => {
    const jwks = fakeJwks([{ keys: [jwk(rsa, { kid: 'r1' }), jwk(ec, { kid: 'e1' })] }]);
    const resolver = new JwksKeyResolver(options(jwks.fetchFn));
    expect((await resolver.resolve('r1'))?.algorithm).toBe('RS256');
    expect((await resolver.resolve('e1'))?.algorithm).toBe('ES256');
    expect(await resolver.resolve('r1')).not.toBeNull();
    expect(jwks.calls()).toBe(1);
  });

  it('refetches for an unknown kid at most once per interval, and finds a rotated-in key', async () => {
    const jwks = fakeJwks([{ keys: [jwk(rsa, { kid: 'r1' })] }, { keys: [jwk(rsa, { kid: 'r1' }), jwk(ec, { kid: 'e2' })] }]);
    const resolver = new JwksKeyResolver(options(jwks.fetchFn));
    expect(await resolver.resolve('r1')).not.toBeNull();
    for (let i = 0; i < 20; i += 1) expect(await resolver.resolve(`made-up-${i}`)).toBeNull();
    expect(jwks.calls()).toBe(1);
    now += 30_000;
    expect((await resolver.resolve('e2'))?.algorithm).toBe('ES256');
    expect(jwks.calls()).toBe(2);
  });

  it('shares one fetch between concurrent lookups', async () => {
    const jwks = fakeJwks([{ keys: [jwk(rsa, { kid: 'r1' })] }]);
    const resolver = new JwksKeyResolver(options(jwks.fetchFn));
    const found = await Promise.all([resolver.resolve('r1'), resolver.resolve('r1'), resolver.resolve('x')]);
    expect(found.map((key) => key?.kid ?? null)).toEqual(['r1', 'r1', null]);
    expect(jwks.calls()).toBe(1);
  });

  it('keeps the keys it has when the provider cannot be reached, and reports it', async () => {
    const errors: string[] = [];
    const jwks = fakeJwks([{ keys: [jwk(rsa, { kid: 'r1' })] }, new Error('connect ECONNREFUSED')]);
    const resolver = new JwksKeyResolver({ ...options(jwks.fetchFn), onError: (message) => errors.push(message) });
    await resolver.warmUp();
    now += 60_000;
    expect(await resolver.resolve('unknown')).toBeNull();
    expect(errors.join()).toMatch(/ECONNREFUSED/);
    expect(await resolver.resolve('r1')).not.toBeNull();
  });

  it('drops keys a later fetch no longer lists (refreshed in the background once stale)', async () => {
    const jwks = fakeJwks([{ keys: [jwk(rsa, { kid: 'old' })] }, { keys: [jwk(ec, { kid: 'new' })] }]);
    const resolver = new JwksKeyResolver(options(jwks.fetchFn));
    expect(await resolver.resolve('old')).not.toBeNull();
    now += 600_000;
    expect(await resolver.resolve('old')).not.toBeNull(); // served, while a refresh starts
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(jwks.calls()).toBe(2);
    expect(await resolver.resolve('old')).toBeNull();
    expect(await resolver.resolve('new')).not.toBeNull();
  });

  it('gives up on a provider that does not answer within the timeout', async () => {
    const errors: string[] = [];
    const hanging = ((_url: string, init: RequestInit) =>
      new Promise((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(init.signal?.reason)))) as typeof fetch;
    const resolver = new JwksKeyResolver({ ...options(hanging), timeoutMs: 100, onError: (message) => errors.push(message) });
    const started = Date.now();
    expect(await resolver.resolve('r1')).toBeNull();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(errors.join()).toMatch(/JWKS fetch .* failed/);
  });

  it('refuses an HTTP error and an oversized document', async () => {
    const errors: string[] = [];
    const statusError = (async () => new Response('nope', { status: 503 })) as typeof fetch;
    await new JwksKeyResolver({ ...options(statusError), onError: (message) => errors.push(message) }).warmUp();
    const huge = (async () => new Response(JSON.stringify({ keys: [], pad: 'x'.repeat(600 * 1024) }))) as typeof fetch;
    await new JwksKeyResolver({ ...options(huge), onError: (message) => errors.push(message) }).warmUp();
    expect(errors[0]).toMatch(/HTTP 503/);
    expect(errors[1]).toMatch(/larger than/);
  });
});
