import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { createHash, randomBytes, createHmac, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sign } from 'jsonwebtoken';

/**
 * Identity and HTTP hardening against the real service (PostgreSQL, Kafka): single sign-on tokens verified
 * against a JWKS served by a local HTTP server, local HS256 tokens, API keys, audited login failures,
 * per-address and per-route rate limits, security headers and body limits.
 *
 * Every test that fails authentication on purpose does so from its own address (X-Forwarded-For, trusted
 * from loopback only), so the per-address failure limit and audit coalescing of one test never touch another.
 */
describe('identity: single sign-on, API keys, login failures, HTTP hardening', () => {
  const env = readTestEnv();
  const ISSUER = 'https://idp.portcullis.test/';
  const AUDIENCE = 'portcullis-api';
  const FAILURE_LIMIT = 5;
  const SENSITIVE_LIMIT = 3;

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rotated = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicJwk = (key: KeyObject, kid: string): JsonWebKey => ({ ...key.export({ format: 'jwk' }), kid, use: 'sig' });
  const published: JsonWebKey[] = [publicJwk(rsa.publicKey, 'rsa-1'), publicJwk(ec.publicKey, 'ec-1')];
  let jwksRequests = 0;
  let jwksServer: Server;
  let service: RunningPolicyService;
  let nextAddress = 10;

  /** A fresh client address for a test (198.51.100.0/24, documentation range). */
  const address = () => `198.51.100.${nextAddress++}`;

  const idpToken = (
    key: KeyObject,
    algorithm: 'RS256' | 'ES256',
    kid: string,
    claims: Record<string, unknown> = { roles: ['security-lead'] },
    options: Record<string, unknown> = {},
  ) => {
    const merged: Record<string, unknown> = { algorithm, keyid: kid, subject: 'alice@example.com', issuer: ISSUER, audience: AUDIENCE, expiresIn: '5m', ...options };
    if (merged.expiresIn === null) delete merged.expiresIn;
    return sign(claims, key, merged);
  };
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const get = (path: string, from: string) => service.http().get(path).set('X-Forwarded-For', from);
  const failures = async (from: string) =>
    (
      await service.db.query(
        `SELECT actor, reason, source_address, details FROM audit_entries WHERE action = 'auth.failed' AND source_address = $1 ORDER BY id`,
        [from],
      )
    ).rows as { actor: string; reason: string; source_address: string; details: Record<string, unknown> }[];

  beforeAll(async () => {
    jwksServer = createServer((request, response) => {
      if (request.url !== '/jwks.json') return void response.writeHead(404).end();
      jwksRequests += 1;
      response.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const { port } = jwksServer.address() as AddressInfo;
    service = await startPolicyService(env, {
      identity: {
        clockToleranceSeconds: 5,
        maxTokenLifetimeSeconds: 86400,
        apiKeyLastUsedIntervalSeconds: 60,
        oidc: {
          jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
          issuer: ISSUER,
          audience: [AUDIENCE],
          algorithms: ['RS256', 'ES256'],
          rolesClaim: 'roles',
          subjectClaim: 'sub',
          jwksRefetchIntervalSeconds: 1,
          jwksMaxAgeSeconds: 600,
          jwksTimeoutMs: 2000,
        },
      },
      rateLimits: {
        authFailureLimit: FAILURE_LIMIT,
        authFailureWindowSeconds: 60,
        authFailureAuditWindowSeconds: 60,
        sensitiveLimit: SENSITIVE_LIMIT,
        sensitiveWindowSeconds: 60,
      },
      trustProxy: 'loopback',
    });
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  describe('single sign-on tokens (JWKS)', () => {
    it('lets RS256 and ES256 tokens with the right issuer, audience and expiry in, with their roles', async () => {
      const from = address();
      const auditor = idpToken(rsa.privateKey, 'RS256', 'rsa-1', { roles: ['auditor'] });
      await get('/api/v1/audit', from).auth(auditor, { type: 'bearer' }).expect(200);
      await get('/api/v1/api-keys', from).auth(auditor, { type: 'bearer' }).expect(200);
      await service.http().post('/api/v1/api-keys').auth(auditor, { type: 'bearer' }).send({ name: 'nope', roles: ['auditor'] }).expect(403);

      const admin = idpToken(ec.privateKey, 'ES256', 'ec-1', { roles: ['admin'] }, { subject: 'ada@example.com' });
      const created = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).set('X-Forwarded-For', from)
        .send({ name: 'created-through-sso', roles: ['auditor'] }).expect(201);
      const entry = await service.db.query(`SELECT actor FROM audit_entries WHERE action = 'api-key.created' AND details->>'apiKeyId' = $1`, [created.body.id]);
      expect(entry.rows).toEqual([{ actor: 'user:ada@example.com' }]);
      expect(await failures(from)).toEqual([]);
      expect(jwksRequests).toBeGreaterThanOrEqual(1);
    });

    it('gives a user with several roles all of them', async () => {
      const leadAndAuditor = idpToken(rsa.privateKey, 'RS256', 'rsa-1', { roles: ['security-lead', 'auditor', 'not-a-role'] });
      await service.http().get('/api/v1/api-keys').auth(leadAndAuditor, { type: 'bearer' }).expect(200); // as auditor
      const revoke = await service.http().post('/api/v1/groups/no-such-group/revoke').auth(leadAndAuditor, { type: 'bearer' })
        .send({ reason: 'roles check' });
      expect(revoke.status).not.toBe(403); // as security lead (the group does not exist: 404)
      const leadOnly = idpToken(rsa.privateKey, 'RS256', 'rsa-1', { roles: ['security-lead'] });
      await service.http().get('/api/v1/api-keys').auth(leadOnly, { type: 'bearer' }).expect(403);
      const adminAndAuditor = service.token('ada-multi', 'auditor', 'admin');
      await service.http().post('/api/v1/api-keys').auth(adminAndAuditor, { type: 'bearer' }).send({ name: 'multi-role-made', roles: ['auditor'] }).expect(201);
    });

    const rejected: [string, () => string, RegExp][] = [
      ['a wrong issuer', () => idpToken(rsa.privateKey, 'RS256', 'rsa-1', undefined, { issuer: 'https://evil.example/' }), /^wrong issuer$/],
      ['a wrong audience', () => idpToken(ec.privateKey, 'ES256', 'ec-1', undefined, { audience: 'another-app' }), /^wrong audience$/],
      [
        'an expired token',
        () => idpToken(rsa.privateKey, 'RS256', 'rsa-1', { roles: ['admin'], exp: Math.floor(Date.now() / 1000) - 600 }, { expiresIn: null }),
        /^token expired$/,
      ],
      ['an unknown kid', () => idpToken(rsa.privateKey, 'RS256', 'who-knows'), /^unknown signing key id "who-knows"$/],
      [
        'a tampered payload',
        () => {
          const [header, , signature] = idpToken(rsa.privateKey, 'RS256', 'rsa-1').split('.');
          return `${header}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: ISSUER, aud: AUDIENCE, exp: 4102444800 })}.${signature}`;
        },
        /^invalid signature$/,
      ],
      ['a signature by another key under a known kid', () => idpToken(rotated.privateKey, 'ES256', 'ec-1'), /^invalid signature$/],
      [
        'alg none',
        () => `${b64({ alg: 'none', typ: 'JWT', kid: 'rsa-1' })}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: ISSUER, aud: AUDIENCE, exp: 4102444800 })}.`,
        /^algorithm none not accepted/,
      ],
      [
        'alg none without a kid',
        () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: 'portcullis-test', aud: 'portcullis', exp: 4102444800 })}.`,
        /unsigned token|algorithm not allowed/,
      ],
      [
        'HS256 signed with the JWKS public key',
        () => {
          const body = `${b64({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' })}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: ISSUER, aud: AUDIENCE, exp: 4102444800 })}`;
          const pem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
          return `${body}.${createHmac('sha256', pem).update(body).digest('base64url')}`;
        },
        /^algorithm HS256 not accepted/,
      ],
      [
        'HS256 signed with the JWKS public key, kid removed',
        () => {
          const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'alice@example.com', roles: ['admin'], iss: 'portcullis-test', aud: 'portcullis', exp: 4102444800 })}`;
          const pem = rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString();
          return `${body}.${createHmac('sha256', pem).update(body).digest('base64url')}`;
        },
        /^invalid signature$/,
      ],
    ];

    it.each(rejected)('refuses %s with 401 and an auth.failed audit entry (reason, address, path; never the token)', async (_case, make, reason) => {
      const from = address();
      const token = make();
      const response = await get('/api/v1/groups', from).auth(token, { type: 'bearer' }).expect(401);
      expect(response.body).toMatchObject({ statusCode: 401, error: 'unauthorized' });
      expect(response.headers['www-authenticate']).toMatch(/^Bearer/);
      const entries = await failures(from);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({ actor: 'anonymous', source_address: from, details: { method: 'GET', path: '/api/v1/groups', credential: 'jwt' } });
      expect(entries[0].reason).toMatch(reason);
      expect(entries[0].details.unverifiedSubject).toBe('alice@example.com');
      const leaked = await service.db.query(`SELECT count(*)::int AS n FROM audit_entries WHERE strpos(details::text || coalesce(reason, ''), $1) > 0`, [
        token.split('.')[2] || token.split('.')[1],
      ]);
      expect(leaked.rows[0].n).toBe(0);
    });

    it('finds a key the provider rotated in, fetching the JWKS again for an unknown kid at most once per interval', async () => {
      const from = address();
      const token = idpToken(rotated.privateKey, 'ES256', 'ec-2', { roles: ['auditor'] });
      await get('/api/v1/audit', from).auth(token, { type: 'bearer' }).expect(401);
      published.push(publicJwk(rotated.publicKey, 'ec-2'));
      const before = jwksRequests;
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await get('/api/v1/audit', from).auth(token, { type: 'bearer' }).expect(200);
      for (let i = 0; i < 3; i += 1) await get('/api/v1/audit', from).auth(idpToken(rotated.privateKey, 'ES256', `made-up-${i}`), { type: 'bearer' }).expect(401);
      expect(jwksRequests - before).toBe(1);
    });

    it('lists failures through the audit API for auditors', async () => {
      const auditor = service.token('audrey', 'auditor');
      const history = await service.http().get('/api/v1/audit?action=auth.failed&actor=anonymous&limit=100').auth(auditor, { type: 'bearer' }).expect(200);
      expect(history.body.items.length).toBeGreaterThan(0);
      expect(history.body.items[0]).toMatchObject({ actor: 'anonymous', action: 'auth.failed' });
    });
  });

  describe('API keys', () => {
    it("records on the caller's audit entries how it authenticated: an API key (with its name) or a local token", async () => {
      const admin = service.token('ada', 'admin');
      const suffix = randomBytes(3).toString('hex');
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .send({ id: `via-s-${suffix}`, name: 'via', kind: 'postgres', adapterId: `via-a-${suffix}` }).expect(201);
      for (const id of [`via-key-${suffix}`, `via-token-${suffix}`]) {
        await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' }).send({ id, name: id, systemIds: [`via-s-${suffix}`] }).expect(201);
      }
      const created = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' })
        .send({ name: 'soar-containment', roles: ['security-lead'] }).expect(201);

      await service.http().post(`/api/v1/groups/via-key-${suffix}/revoke`).set('X-API-Key', created.body.key)
        .send({ reason: 'playbook: contain' }).expect(202);
      await service.http().post(`/api/v1/groups/via-token-${suffix}/revoke`).auth(service.token('alice', 'security-lead'), { type: 'bearer' })
        .send({ reason: 'by hand' }).expect(202);

      const entries = await service.db.query<{ group_id: string; actor: string; details: Record<string, unknown> }>(
        `SELECT group_id, actor, details FROM audit_entries WHERE action = 'group.revoked' AND group_id LIKE $1 ORDER BY seq`,
        [`via-%-${suffix}`],
      );
      expect(entries.rows).toEqual([
        expect.objectContaining({
          group_id: `via-key-${suffix}`,
          actor: `user:apikey:${created.body.id}`,
          details: expect.objectContaining({ via: 'api-key', apiKeyName: 'soar-containment' }),
        }),
        expect.objectContaining({ group_id: `via-token-${suffix}`, actor: 'user:alice', details: expect.objectContaining({ via: 'local-token' }) }),
      ]);
      expect(entries.rows[1].details).not.toHaveProperty('apiKeyName');
      // The chain still verifies with the credential in the hashed content.
      const verified = await service.http().get('/api/v1/audit/verify').auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(200);
      expect(verified.body.intact).toBe(true);
    });

    it('creates a key once, stores only its hash, lets it in by either header, records its use, and revokes it', async () => {
      const admin = service.token('ada', 'admin');
      const from = address();
      const created = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).set('X-Forwarded-For', from)
        .send({ name: 'soar-playbook', roles: ['security-lead', 'auditor'] }).expect(201);
      const key: string = created.body.key;
      const id: string = created.body.id;
      expect(key).toMatch(/^pcl_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      expect(key.startsWith(`pcl_${id}_`)).toBe(true);
      expect(created.body).toMatchObject({ name: 'soar-playbook', roles: ['security-lead', 'auditor'], status: 'active', createdBy: 'user:ada', lastUsedAt: null });
      expect(created.headers['cache-control']).toBe('no-store');
      const secret = key.slice(`pcl_${id}_`.length);

      const listed = await service.http().get('/api/v1/api-keys').auth(admin, { type: 'bearer' }).expect(200);
      expect(listed.body.items.find((item: { id: string }) => item.id === id)).toMatchObject({ name: 'soar-playbook', hint: `pcl_${id}_…` });
      expect(JSON.stringify(listed.body)).not.toContain(secret);

      const stored = await service.db.query('SELECT * FROM api_keys WHERE id = $1', [id]);
      expect(stored.rows[0].secret_hash).toEqual(createHash('sha256').update(key).digest());
      expect(JSON.stringify(stored.rows[0])).not.toContain(secret);
      expect(Buffer.concat(Object.values(stored.rows[0]).map((value) => Buffer.from(String(value)))).includes(secret)).toBe(false);

      await service.http().get('/api/v1/audit').auth(key, { type: 'bearer' }).set('X-Forwarded-For', from).expect(200);
      await service.http().get('/api/v1/api-keys').set('X-API-Key', key).expect(200);
      await service.http().post('/api/v1/api-keys').set('X-API-Key', key).send({ name: 'x', roles: ['auditor'] }).expect(403); // not an admin
      const used = await service.db.query('SELECT last_used_at, last_used_from FROM api_keys WHERE id = $1', [id]);
      expect(used.rows[0].last_used_at).toBeInstanceOf(Date);
      expect(used.rows[0].last_used_from).toBe(from);

      const revoked = await service.http().delete(`/api/v1/api-keys/${id}`).auth(admin, { type: 'bearer' }).set('X-Forwarded-For', from)
        .send({ reason: 'playbook retired' }).expect(200);
      expect(revoked.body).toMatchObject({ status: 'revoked', revokedBy: 'user:ada' });
      const refusedFrom = address();
      await service.http().get('/api/v1/audit').auth(key, { type: 'bearer' }).set('X-Forwarded-For', refusedFrom).expect(401);
      expect(await failures(refusedFrom)).toEqual([
        expect.objectContaining({ actor: 'anonymous', reason: 'API key revoked', details: expect.objectContaining({ credential: 'api-key', unverifiedApiKeyId: id }) }),
      ]);

      const audit = await service.db.query(
        `SELECT action, actor, reason, source_address, details FROM audit_entries WHERE action LIKE 'api-key.%' AND details->>'apiKeyId' = $1 ORDER BY id`,
        [id],
      );
      expect(audit.rows).toEqual([
        expect.objectContaining({
          action: 'api-key.created',
          actor: 'user:ada',
          source_address: from,
          details: expect.objectContaining({ before: null, after: expect.objectContaining({ name: 'soar-playbook', status: 'active' }) }),
        }),
        expect.objectContaining({
          action: 'api-key.revoked',
          actor: 'user:ada',
          reason: 'playbook retired',
          source_address: from,
          details: expect.objectContaining({ before: expect.objectContaining({ status: 'active' }), after: expect.objectContaining({ status: 'revoked' }) }),
        }),
      ]);
      const everywhere = await service.db.query(`SELECT count(*)::int AS n FROM audit_entries WHERE strpos(details::text || coalesce(reason, ''), $1) > 0`, [secret]);
      expect(everywhere.rows[0].n).toBe(0);
    });

    it('refuses a wrong secret for a real key id, an unknown or malformed key, and keys managing keys', async () => {
      const admin = service.token('ada-2', 'admin');
      const created = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).send({ name: 'automation-admin', roles: ['admin'] }).expect(201);
      const key: string = created.body.key;
      const wrongSecret = `pcl_${created.body.id}_${'A'.repeat(43)}`;
      const cases: [string, string][] = [
        [wrongSecret, 'API key secret does not match'],
        [`pcl_0123456789abcdef_${'B'.repeat(43)}`, 'unknown API key'],
        ['pcl_not-even-close', 'malformed API key'],
      ];
      for (const [presented, reason] of cases) {
        const from = address();
        await service.http().get('/api/v1/audit').set('X-API-Key', presented).set('X-Forwarded-For', from).expect(401);
        expect((await failures(from)).map((entry) => entry.reason)).toEqual([reason]);
      }
      const denied = await service.http().post('/api/v1/api-keys').set('X-API-Key', key).send({ name: 'minted-by-a-key', roles: ['admin'] }).expect(403);
      expect(denied.body.message).toMatch(/API keys cannot/);
      // Nor add trust in an adapter's key (whose holder's "enforced" the service would then believe); revoking trust stays open.
      const spki = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const trust = await service.http().put('/api/v1/adapters/key-made-adapter/keys/k1').set('X-API-Key', key).send({ publicKey: spki }).expect(403);
      expect(trust.body.message).toMatch(/API keys cannot register adapter keys/);
      await service.http().put('/api/v1/adapters/key-made-adapter/keys/k1').auth(admin, { type: 'bearer' }).send({ publicKey: spki }).expect(200);
      await service.http().delete('/api/v1/adapters/key-made-adapter/keys/k1').set('X-API-Key', key).send({ reason: 'playbook: adapter host compromised' }).expect(200);
      // Nor exempt anyone (an exemption keeps access through every revocation); removing one stays open.
      const system = { id: `key-made-system-${randomBytes(3).toString('hex')}`, name: 'by a key', kind: 'postgres', adapterId: 'key-made-adapter' };
      const exempted = await service.http().post('/api/v1/systems').set('X-API-Key', key).send({ ...system, exemptPrincipals: ['mallory'] }).expect(403);
      expect(exempted.body).toMatchObject({ error: 'needs_a_person' });
      await service.http().post('/api/v1/systems').set('X-API-Key', key).send(system).expect(201);
      await service.http().post(`/api/v1/systems/${system.id}/exemptions`).set('X-API-Key', key).send({ principal: 'mallory', reason: 'Keep my access' }).expect(403);
      await service.http().post(`/api/v1/systems/${system.id}/exemptions`).auth(admin, { type: 'bearer' }).send({ principal: 'oncall', reason: 'On-call DBA' }).expect(201);
      await service.http().delete(`/api/v1/systems/${system.id}/exemptions/oncall`).set('X-API-Key', key).send({ reason: 'playbook: contain' }).expect(200);
      const exemptions = await service.db.query('SELECT principal FROM system_exemptions WHERE system_id = $1', [system.id]);
      expect(exemptions.rows).toEqual([]);
      // Another admin: every call of the creation route counts against its caller's sensitive-route budget.
      const other = service.token('ada-validation', 'admin');
      await service.http().post('/api/v1/api-keys').auth(other, { type: 'bearer' }).send({ name: 'automation-admin', roles: ['auditor'] }).expect(409);
      await service.http().post('/api/v1/api-keys').auth(other, { type: 'bearer' })
        .send({ name: 'already-expired', roles: ['auditor'], expiresAt: '2020-01-01T00:00:00Z' }).expect(400);
      await service.http().post('/api/v1/api-keys').auth(other, { type: 'bearer' }).send({ name: 'bad-role', roles: ['root'] }).expect(400);
    });

    it('refuses an expired key', async () => {
      const admin = service.token('ada-3', 'admin');
      const created = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' })
        .send({ name: 'short-lived', roles: ['auditor'], expiresAt: new Date(Date.now() + 1500).toISOString() }).expect(201);
      await service.http().get('/api/v1/audit').set('X-API-Key', created.body.key).expect(200);
      await new Promise((resolve) => setTimeout(resolve, 1600));
      const from = address();
      const response = await service.http().get('/api/v1/audit').set('X-API-Key', created.body.key).set('X-Forwarded-For', from).expect(401);
      expect(response.body.message).toBe('API key expired');
      expect((await failures(from)).map((entry) => entry.reason)).toEqual(['API key expired']);
    });
  });

  describe('rate limits', () => {
    it(`answers 429 to failing attempts after ${FAILURE_LIMIT} from an address, never to a valid token, and audits them coalesced`, async () => {
      const from = address();
      const forged = idpToken(rotated.privateKey, 'ES256', 'ec-1');
      for (let i = 0; i < FAILURE_LIMIT; i += 1) await get('/api/v1/groups', from).auth(forged, { type: 'bearer' }).expect(401);
      const limited = await get('/api/v1/groups', from).auth(forged, { type: 'bearer' }).expect(429);
      expect(limited.body).toMatchObject({ statusCode: 429, error: 'too_many_requests' });
      expect(limited.body.message).toMatch(/too many failed authentications/);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      // Responders behind the same address are never locked out by someone else's failures.
      await get('/api/v1/audit', from).auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(200);
      await get('/api/v1/groups', from).auth(forged, { type: 'bearer' }).expect(429);
      // One entry for the first failure; the others go into one summary when the window ends.
      expect(await failures(from)).toHaveLength(1);
    });

    it('does not count requests without credentials, nor audit them', async () => {
      const from = address();
      for (let i = 0; i < FAILURE_LIMIT + 2; i += 1) await get('/api/v1/groups', from).expect(401);
      await get('/api/v1/audit', from).auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(200);
      expect(await failures(from)).toEqual([]);
    });

    it(`limits API key creation to ${SENSITIVE_LIMIT} per caller per window (429, JSON)`, async () => {
      const burst = service.token('ada-burst', 'admin');
      for (let i = 0; i < SENSITIVE_LIMIT; i += 1) {
        await service.http().post('/api/v1/api-keys').auth(burst, { type: 'bearer' }).send({ name: `burst-${i}`, roles: ['auditor'] }).expect(201);
      }
      const limited = await service.http().post('/api/v1/api-keys').auth(burst, { type: 'bearer' }).send({ name: 'burst-x', roles: ['auditor'] }).expect(429);
      expect(limited.body).toMatchObject({ statusCode: 429, error: 'too_many_requests' });
      expect(limited.headers['retry-after-sensitive']).toBeDefined();
      // Another admin has a budget of its own; reading is not limited.
      await service.http().post('/api/v1/api-keys').auth(service.token('ada-calm', 'admin'), { type: 'bearer' }).send({ name: 'calm', roles: ['auditor'] }).expect(201);
      for (let i = 0; i < SENSITIVE_LIMIT + 2; i += 1) await service.http().get('/api/v1/api-keys').auth(burst, { type: 'bearer' }).expect(200);
    });
  });

  describe('HTTP hardening', () => {
    it('refuses NUL characters in bodies and URLs with 400, before they reach the database', async () => {
      const lead = service.token('alice', 'security-lead');
      const body = await service.http().post('/api/v1/groups/no-such-group/revoke').auth(lead, { type: 'bearer' })
        .set('content-type', 'application/json').send('{"reason":"contain\\u0000now"}').expect(400);
      expect(body.body).toMatchObject({ statusCode: 400, error: 'bad_request' });
      await service.http().get('/api/v1/audit?actor=user%00alice').auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(400);
    });

    it('sends security headers and no x-powered-by on the API', async () => {
      const response = await service.http().get('/api/v1/audit').auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(200);
      expect(response.headers['content-security-policy']).toMatch(/default-src 'none'/);
      expect(response.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(response.headers['x-content-type-options']).toBe('nosniff');
      expect(response.headers['x-frame-options']).toBe('DENY');
      expect(response.headers['referrer-policy']).toBe('no-referrer');
      expect(response.headers['strict-transport-security']).toMatch(/max-age=/);
      expect(response.headers['cache-control']).toBe('no-store');
      expect(response.headers['x-powered-by']).toBeUndefined();
    });

    it('keeps the Swagger UI working under its own CSP (scripts from this origin, none inline)', async () => {
      const page = await service.http().get('/api/docs').redirects(1).expect(200);
      const csp = page.headers['content-security-policy'];
      expect(csp).toMatch(/script-src 'self'/);
      expect(csp).not.toMatch(/script-src[^;]*unsafe/);
      expect(page.text).not.toMatch(/<script>(?!\s*<\/script>)/); // every script has a src
      for (const [, src] of page.text.matchAll(/<script src="\.?\/?([^"]+)"/g)) {
        await service.http().get(`/api/docs/${src.replace(/^docs\//, '')}`).expect(200);
      }
      await service.http().get('/api/docs-json').expect(200);
    });

    it('answers 413 to an oversized body, 415 to a non-JSON one, 400 to malformed JSON — all as JSON', async () => {
      const admin = service.token('ada-bodies', 'admin');
      const big = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' })
        .send({ name: 'big', roles: ['auditor'], padding: 'x'.repeat(300 * 1024) }).expect(413);
      expect(big.body).toMatchObject({ statusCode: 413, error: 'payload_too_large' });
      const text = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).set('content-type', 'text/plain').send('name=x').expect(415);
      expect(text.body).toMatchObject({ statusCode: 415, error: 'unsupported_media_type' });
      await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).set('content-type', 'application/x-www-form-urlencoded')
        .send('name=x&roles=admin').expect(415);
      const malformed = await service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).set('content-type', 'application/json').send('{"name": ').expect(400);
      expect(malformed.body).toMatchObject({ statusCode: 400, error: 'bad_request' });
    });
  });
});
