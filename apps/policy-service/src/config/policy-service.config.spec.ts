import { generateSigningKeyPair, publicKeyFingerprint, parsePrivateKey } from '@portcullis/contracts';
import { InvalidConfigurationError, loadPolicyServiceConfig } from './policy-service.config';

const signingKey = generateSigningKeyPair().privateKeyPem;

const valid = {
  SIGNING_KEY: signingKey,
  DATABASE_URL: 'postgres://portcullis@127.0.0.1:5432/portcullis',
  JWT_SECRET: 'x'.repeat(32),
  KAFKA_BROKERS: '127.0.0.1:9092, 127.0.0.1:9093',
};

describe('loadPolicyServiceConfig', () => {
  it('reads a valid environment with defaults', () => {
    const config = loadPolicyServiceConfig(valid);
    expect(config.port).toBe(3000);
    expect(config.kafka.brokers).toEqual(['127.0.0.1:9092', '127.0.0.1:9093']);
    expect(config.acknowledgementDeadlineSeconds).toBe(60);
    expect(config.ensureTopics).toBe(true);
  });

  it('reports every problem at once', () => {
    expect(() => loadPolicyServiceConfig({ JWT_SECRET: 'short', PORT: 'eighty' })).toThrow(InvalidConfigurationError);
    try {
      loadPolicyServiceConfig({ JWT_SECRET: 'short', PORT: 'eighty' });
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toContain('DATABASE_URL');
      expect(message).toContain('JWT_SECRET');
      expect(message).toContain('PORT');
    }
  });

  it('prunes published outbox rows after 7 days by default, hourly; 0 keeps them', () => {
    const config = loadPolicyServiceConfig(valid);
    expect(config.outboxRetentionHours).toBe(168);
    expect(config.outboxPruneIntervalMs).toBe(3_600_000);
    const custom = loadPolicyServiceConfig({ ...valid, OUTBOX_RETENTION_HOURS: '0', OUTBOX_PRUNE_INTERVAL_MS: '60000' });
    expect(custom.outboxRetentionHours).toBe(0);
    expect(custom.outboxPruneIntervalMs).toBe(60_000);
    expect(() => loadPolicyServiceConfig({ ...valid, OUTBOX_RETENTION_HOURS: '-1' })).toThrow(/OUTBOX_RETENTION_HOURS must be an integer/);
    expect(() => loadPolicyServiceConfig({ ...valid, OUTBOX_RETENTION_HOURS: '1.5' })).toThrow(/OUTBOX_RETENTION_HOURS/);
    expect(() => loadPolicyServiceConfig({ ...valid, OUTBOX_PRUNE_INTERVAL_MS: '10' })).toThrow(/OUTBOX_PRUNE_INTERVAL_MS must be an integer/);
  });

  it('reads the signing key; its id defaults to the fingerprint of the key', () => {
    const config = loadPolicyServiceConfig(valid);
    expect(config.signing.keyId).toBe(`policy-${publicKeyFingerprint(parsePrivateKey(signingKey))}`);
    expect(loadPolicyServiceConfig({ ...valid, SIGNING_KEY_ID: 'policy-2026-11' }).signing.keyId).toBe('policy-2026-11');
    expect(config.commandTtlSeconds).toBe(7 * 86400);
  });

  it('refuses to start without a usable signing key', () => {
    expect(() => loadPolicyServiceConfig({ ...valid, SIGNING_KEY: undefined })).toThrow(/SIGNING_KEY must be an Ed25519/);
    expect(() => loadPolicyServiceConfig({ ...valid, SIGNING_KEY: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' })).toThrow(
      /SIGNING_KEY/,
    );
  });

  it('rejects an unknown SASL mechanism', () => {
    expect(() => loadPolicyServiceConfig({ ...valid, KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_MECHANISM: 'plain' })).toThrow(
      /KAFKA_SASL_MECHANISM/,
    );
  });

  describe('identity, single sign-on and rate limits', () => {
    // `valid` carries JWT_SECRET: local tokens beside single sign-on must be asked for.
    const sso = {
      OIDC_JWKS_URL: 'https://idp.example/.well-known/jwks.json',
      OIDC_ISSUER: 'https://idp.example/',
      OIDC_AUDIENCE: 'portcullis-api',
      ALLOW_LOCAL_TOKENS: 'true',
    };
    const problems = (env: NodeJS.ProcessEnv): string => {
      try {
        loadPolicyServiceConfig(env);
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    };

    it('has safe defaults: local tokens only, limits on, no proxy trusted', () => {
      const config = loadPolicyServiceConfig(valid);
      expect(config.identity).toEqual({ clockToleranceSeconds: 30, maxTokenLifetimeSeconds: 86400, oidc: null, apiKeyLastUsedIntervalSeconds: 60 });
      expect(config.rateLimits).toEqual({
        authFailureLimit: 10,
        authFailureWindowSeconds: 60,
        authFailureAuditWindowSeconds: 60,
        sensitiveLimit: 30,
        sensitiveWindowSeconds: 60,
      });
      expect(config.trustProxy).toBe(false);
    });

    it('reads single sign-on settings', () => {
      const config = loadPolicyServiceConfig({
        ...valid,
        ...sso,
        OIDC_AUDIENCE: 'portcullis-api, api://portcullis',
        OIDC_ALGORITHMS: 'ES256',
        OIDC_ROLES_CLAIM: 'realm_access.roles',
        OIDC_SUBJECT_CLAIM: 'preferred_username',
        OIDC_JWKS_REFETCH_INTERVAL_SECONDS: '10',
        OIDC_JWKS_TIMEOUT_MS: '2000',
      });
      expect(config.identity.oidc).toEqual({
        jwksUrl: 'https://idp.example/.well-known/jwks.json',
        issuer: 'https://idp.example/',
        audience: ['portcullis-api', 'api://portcullis'],
        algorithms: ['ES256'],
        rolesClaim: 'realm_access.roles',
        subjectClaim: 'preferred_username',
        jwksRefetchIntervalSeconds: 10,
        jwksMaxAgeSeconds: 600,
        jwksTimeoutMs: 2000,
      });
      expect(loadPolicyServiceConfig({ ...valid, ...sso }).identity.oidc).toMatchObject({ algorithms: ['RS256', 'ES256'], rolesClaim: 'roles', subjectClaim: 'sub' });
    });

    it('refuses local tokens beside single sign-on unless asked for', () => {
      expect(problems({ ...valid, ...sso, ALLOW_LOCAL_TOKENS: undefined })).toMatch(/JWT_SECRET and OIDC_JWKS_URL are both set/);
      expect(loadPolicyServiceConfig({ ...valid, ...sso, ALLOW_LOCAL_TOKENS: undefined, JWT_SECRET: undefined }).auth.jwtSecret).toBe('');
    });

    it('lets JWT_SECRET be left out only with single sign-on', () => {
      expect(problems({ ...valid, JWT_SECRET: undefined })).toMatch(/JWT_SECRET/);
      expect(loadPolicyServiceConfig({ ...valid, ...sso, JWT_SECRET: undefined }).auth.jwtSecret).toBe('');
      expect(problems({ ...valid, ...sso, JWT_SECRET: 'too-short' })).toMatch(/JWT_SECRET must be at least 32/);
    });

    it('requires issuer and audience with a JWKS, and refuses unsafe algorithms and URLs', () => {
      expect(problems({ ...valid, OIDC_JWKS_URL: sso.OIDC_JWKS_URL })).toMatch(/OIDC_ISSUER is required[\s\S]*OIDC_AUDIENCE is required/);
      expect(problems({ ...valid, ...sso, OIDC_ALGORITHMS: 'RS256,HS256' })).toMatch(/OIDC_ALGORITHMS .*not HS256/);
      expect(problems({ ...valid, ...sso, OIDC_ALGORITHMS: 'none' })).toMatch(/OIDC_ALGORITHMS/);
      expect(problems({ ...valid, ...sso, OIDC_JWKS_URL: 'http://idp.example/jwks' })).toMatch(/OIDC_JWKS_URL must be an https/);
      expect(problems({ ...valid, ...sso, OIDC_JWKS_URL: 'https://user:hunter2@idp.example/jwks' })).toMatch(/must not contain credentials/);
      expect(problems({ ...valid, ...sso, OIDC_JWKS_URL: 'https://user:hunter2@idp.example/jwks' })).not.toContain('hunter2');
      expect(loadPolicyServiceConfig({ ...valid, ...sso, OIDC_JWKS_URL: 'http://127.0.0.1:8080/jwks' }).identity.oidc?.jwksUrl).toBe(
        'http://127.0.0.1:8080/jwks',
      );
      expect(problems({ ...valid, OIDC_ISSUER: 'https://idp.example/' })).toMatch(/OIDC_ISSUER set without OIDC_JWKS_URL/);
    });

    it('reads rate limits and trusted proxies, and refuses to trust every proxy', () => {
      const config = loadPolicyServiceConfig({
        ...valid,
        AUTH_FAILURE_LIMIT: '5',
        AUTH_FAILURE_WINDOW_SECONDS: '300',
        AUTH_FAILURE_AUDIT_WINDOW_SECONDS: '120',
        SENSITIVE_RATE_LIMIT: '3',
        SENSITIVE_RATE_LIMIT_WINDOW_SECONDS: '10',
        API_KEY_LAST_USED_INTERVAL_SECONDS: '5',
        JWT_CLOCK_TOLERANCE_SECONDS: '0',
        JWT_MAX_LIFETIME_SECONDS: '3600',
        HTTP_TRUST_PROXY: 'loopback, 10.0.0.0/8',
      });
      expect(config.rateLimits).toEqual({
        authFailureLimit: 5,
        authFailureWindowSeconds: 300,
        authFailureAuditWindowSeconds: 120,
        sensitiveLimit: 3,
        sensitiveWindowSeconds: 10,
      });
      expect(config.identity).toMatchObject({ apiKeyLastUsedIntervalSeconds: 5, clockToleranceSeconds: 0, maxTokenLifetimeSeconds: 3600 });
      expect(config.trustProxy).toBe('loopback,10.0.0.0/8');
      expect(loadPolicyServiceConfig({ ...valid, HTTP_TRUST_PROXY: '2' }).trustProxy).toBe(2);
      expect(problems({ ...valid, HTTP_TRUST_PROXY: 'true' })).toMatch(/HTTP_TRUST_PROXY/);
      expect(problems({ ...valid, AUTH_FAILURE_LIMIT: '0', SENSITIVE_RATE_LIMIT: 'many' })).toMatch(/AUTH_FAILURE_LIMIT[\s\S]*SENSITIVE_RATE_LIMIT/);
    });
  });
});
