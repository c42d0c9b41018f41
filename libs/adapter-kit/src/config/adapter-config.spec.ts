import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { AdapterConfigError } from './adapter-config.error';
import { parseAdapterConfig } from './adapter-config';
import { loadAdapterConfig } from './adapter-config.loader';
import { TEST_CA_CERTIFICATE } from '@portcullis/kafka/testing/test-ca-certificate';
import { testAdapterKeySettings } from '../testing/test-signing-keys';

const keys = testAdapterKeySettings();

const SystemSchema = z.object({ url: z.string().startsWith('postgres://'), revokeSuperusers: z.boolean().default(false) });

function issuesOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof AdapterConfigError) return error.issues;
    throw error;
  }
  throw new Error('expected an AdapterConfigError');
}

describe('parseAdapterConfig', () => {
  it('applies defaults and splits each system into exempt principals and adapter-specific settings', () => {
    const config = parseAdapterConfig(
      {
        adapterId: 'pg-main',
        stateDir: '/var/lib/portcullis',
        ...keys,
        systems: { 'stock-db': { url: 'postgres://a@db/stock', exemptPrincipals: ['breakglass'] } },
      },
      SystemSchema,
    );

    expect(config.signingKey.keyId).toBe('adapter-unit-test');
    expect(config.trustedKeys('policy-unit-test')?.asymmetricKeyType).toBe('ed25519');
    expect(config.trustedKeys('policy-other')).toBeUndefined();
    expect({ ...config, signingKey: undefined, trustedKeys: undefined }).toEqual({
      signingKey: undefined,
      trustedKeys: undefined,
      adapterId: 'pg-main',
      kind: undefined,
      stateDir: '/var/lib/portcullis',
      heartbeatIntervalMs: 5_000,
      verifyIntervalMs: 30_000,
      deliveredAckDelayMs: 200,
      retry: { initialMs: 1_000, maxMs: 30_000 },
      kafka: { brokers: ['127.0.0.1:9092'], clientId: 'portcullis-adapter-pg-main' },
      httpPort: 0,
      logLevel: 'info',
      systems: [
        { systemId: 'stock-db', exemptPrincipals: ['breakglass'], config: { url: 'postgres://a@db/stock', revokeSuperusers: false } },
      ],
    });
  });

  it('takes Kafka TLS as true (system CAs) or as the CA certificates to trust, read from a file at start', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'adapter-config-ca-'));
    writeFileSync(path.join(dir, 'ca.pem'), `${TEST_CA_CERTIFICATE}\n`);
    const base = { adapterId: 'pg-main', stateDir: '/var/lib/portcullis', ...keys, systems: { 'stock-db': { url: 'postgres://a@db/stock' } } };
    const withKafka = (ssl: unknown) => ({ ...base, kafka: { brokers: ['k1:9093'], ssl } });
    expect(parseAdapterConfig(withKafka(true), SystemSchema).kafka.ssl).toBe(true);
    expect(parseAdapterConfig(withKafka({ ca: path.join(dir, 'ca.pem') }), SystemSchema).kafka.ssl).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(parseAdapterConfig(withKafka({ ca: TEST_CA_CERTIFICATE }), SystemSchema).kafka.ssl).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(issuesOf(() => parseAdapterConfig(withKafka({ ca: path.join(dir, 'missing.pem') }), SystemSchema))).toEqual([
      expect.stringMatching(/^kafka\.ssl\.ca: cannot read .*missing\.pem/),
    ]);
    expect(issuesOf(() => parseAdapterConfig(withKafka({ ca: path.join(dir, 'ca.pem'), verify: false }), SystemSchema))).toEqual([
      expect.stringMatching(/^kafka\.ssl/),
    ]);
  });

  it('reports every problem at once, with its path', () => {
    const issues = issuesOf(() =>
      parseAdapterConfig(
        {
          adapterId: 'PG main',
          stateDir: '/state',
          verifyIntervalMs: 500,
          retry: { initialMs: 5_000, maxMs: 1_000 },
          ...keys,
          systems: { 'stock-db': { url: 'mysql://x' } },
        },
        SystemSchema,
      ),
    );
    expect(issues).toEqual([
      expect.stringMatching(/^adapterId: must be a lower-case slug/),
      expect.stringMatching(/^verifyIntervalMs: .*1000/),
      'retry.maxMs: retry.maxMs must be at least retry.initialMs',
    ]);

    const systemIssues = issuesOf(() =>
      parseAdapterConfig(
        { adapterId: 'pg-main', stateDir: '/state', ...keys, systems: { 'Stock DB': { url: 'postgres://x' }, 'ledger-db': { url: 'mysql://x', exemptPrincipals: [''] } } },
        SystemSchema,
      ),
    );
    expect(systemIssues).toEqual([
      'systems.Stock DB: system id must be a lower-case slug',
      expect.stringMatching(/^systems\.ledger-db\.exemptPrincipals\.0: /),
      expect.stringMatching(/^systems\.ledger-db\.url: /),
    ]);
  });

  it('requires at least one system, a state directory, a signing key and a trusted key', () => {
    expect(issuesOf(() => parseAdapterConfig({ adapterId: 'pg-main', systems: {} }, SystemSchema))).toEqual([
      expect.stringMatching(/^stateDir: /),
      expect.stringMatching(/^signingKey: /),
      expect.stringMatching(/^trustedKeys: /),
      'systems: at least one system must be configured',
    ]);
    expect(
      issuesOf(() =>
        parseAdapterConfig(
          { adapterId: 'pg-main', stateDir: '/s', signingKey: { keyId: 'k', privateKey: 'no key' }, trustedKeys: {}, systems: { a: { url: 'postgres://x' } } },
          SystemSchema,
        ),
      ),
    ).toEqual(['trustedKeys: at least one trusted policy-service key is needed']);
    expect(
      issuesOf(() =>
        parseAdapterConfig(
          { adapterId: 'pg-main', stateDir: '/s', signingKey: { keyId: 'k', privateKey: '/no/such/key.pem' }, trustedKeys: keys.trustedKeys, systems: { a: { url: 'postgres://x' } } },
          SystemSchema,
        ),
      ),
    ).toEqual([expect.stringMatching(/^signingKey\.privateKey: /)]);
  });
});

describe('loadAdapterConfig', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'adapter-config-'));

  function configFile(content: unknown): string {
    const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  }

  it('reads ADAPTER_CONFIG and lets the environment override it', () => {
    const file = configFile({
      adapterId: 'pg-main',
      stateDir: '/from-file',
      retry: { initialMs: 500 },
      kafka: { brokers: ['file-broker:9092'], ssl: true },
      trustedKeys: keys.trustedKeys,
      signingKey: { keyId: 'from-file', privateKey: '/nowhere' },
      systems: { 'stock-db': { url: 'postgres://a@db/stock' } },
    });

    const config = loadAdapterConfig(
      {
        ADAPTER_CONFIG: file,
        ADAPTER_STATE_DIR: '/from-env',
        ADAPTER_RETRY_MAX_MS: '10000',
        ADAPTER_VERIFY_INTERVAL_MS: '5000',
        KAFKA_BROKERS: 'k1:9092, k2:9092',
        PORT: '8081',
        LOG_LEVEL: 'debug',
        ADAPTER_SIGNING_KEY: keys.signingKey.privateKey,
      },
      SystemSchema,
    );

    expect(config).toMatchObject({
      adapterId: 'pg-main',
      stateDir: '/from-env',
      retry: { initialMs: 500, maxMs: 10_000 },
      verifyIntervalMs: 5_000,
      kafka: { brokers: ['k1:9092', 'k2:9092'], ssl: true },
      httpPort: 8081,
      logLevel: 'debug',
      signingKey: { keyId: 'from-file' },
      systems: [{ systemId: 'stock-db' }],
    });
  });

  it('takes TLS from the environment without widening a CA the file names to the system CAs', () => {
    writeFileSync(path.join(dir, 'ca.pem'), `${TEST_CA_CERTIFICATE}\n`);
    const sslWith = (fileSsl: unknown, env: NodeJS.ProcessEnv) =>
      loadAdapterConfig(
        {
          ADAPTER_CONFIG: configFile({
            adapterId: 'pg-main',
            stateDir: '/state',
            kafka: { brokers: ['k1:9093'], ...(fileSsl === undefined ? {} : { ssl: fileSsl }) },
            ...keys,
            systems: { 'stock-db': { url: 'postgres://a@db/stock' } },
          }),
          ...env,
        },
        SystemSchema,
      ).kafka.ssl;
    const caFromFile = { ca: path.join(dir, 'ca.pem') };
    expect(sslWith(caFromFile, {})).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(sslWith(caFromFile, { KAFKA_SSL: 'true' })).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(sslWith(undefined, { KAFKA_SSL: 'true' })).toBe(true);
    expect(sslWith(true, { KAFKA_SSL: 'false' })).toBe(false);
    expect(sslWith(undefined, { KAFKA_SSL: 'false' })).toBe(false);
    expect(sslWith(true, { KAFKA_SSL: '' })).toBe(true); // empty: the file decides
    expect(sslWith(caFromFile, { KAFKA_SSL: ' ' })).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(sslWith(undefined, {})).toBeUndefined();
    expect(sslWith(caFromFile, { KAFKA_SSL_CA: TEST_CA_CERTIFICATE })).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(sslWith(true, { KAFKA_SSL_CA: path.join(dir, 'ca.pem') })).toEqual({ ca: TEST_CA_CERTIFICATE });
    expect(issuesOf(() => sslWith(caFromFile, { KAFKA_SSL: 'false' }))).toEqual([expect.stringContaining('KAFKA_SSL=false, but kafka.ssl.ca')]);
  });

  it('works from the environment alone', () => {
    const config = loadAdapterConfig(
      {
        ADAPTER_ID: 'pg-main',
        ADAPTER_STATE_DIR: '/state',
        ADAPTER_SYSTEMS: JSON.stringify({ 'stock-db': { url: 'postgres://a@db/stock' } }),
        ADAPTER_SIGNING_KEY_ID: 'pg-main-1',
        ADAPTER_SIGNING_KEY: keys.signingKey.privateKey,
        ADAPTER_TRUSTED_KEYS: JSON.stringify(keys.trustedKeys),
      },
      SystemSchema,
    );
    expect(config.systems.map((system) => system.systemId)).toEqual(['stock-db']);
    expect(config.signingKey.keyId).toBe('pg-main-1');
  });

  it('says clearly what is wrong with the file or the environment', () => {
    expect(issuesOf(() => loadAdapterConfig({ ADAPTER_CONFIG: path.join(dir, 'missing.json') }, SystemSchema))).toEqual([
      expect.stringMatching(/^ADAPTER_CONFIG: cannot read .*missing\.json: /),
    ]);
    expect(issuesOf(() => loadAdapterConfig({ ADAPTER_CONFIG: configFile('{ nope') }, SystemSchema))).toEqual([
      expect.stringMatching(/^ADAPTER_CONFIG \(.*\) is not valid JSON: /),
    ]);
    expect(issuesOf(() => loadAdapterConfig({ ADAPTER_ID: 'pg-main', PORT: 'eighty' }, SystemSchema))).toEqual([
      'PORT must be an integer, not "eighty"',
    ]);
  });
});
