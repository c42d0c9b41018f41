import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { AdapterConfigError } from './adapter-config.error';
import { parseAdapterConfig } from './adapter-config';
import { loadAdapterConfig } from './adapter-config.loader';

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
        systems: { 'stock-db': { url: 'postgres://a@db/stock', exemptPrincipals: ['breakglass'] } },
      },
      SystemSchema,
    );

    expect(config).toEqual({
      adapterId: 'pg-main',
      kind: undefined,
      stateDir: '/var/lib/portcullis',
      heartbeatIntervalMs: 5_000,
      verifyIntervalMs: 30_000,
      retry: { initialMs: 1_000, maxMs: 30_000 },
      kafka: { brokers: ['127.0.0.1:9092'], clientId: 'portcullis-adapter-pg-main' },
      httpPort: 0,
      logLevel: 'info',
      systems: [
        { systemId: 'stock-db', exemptPrincipals: ['breakglass'], config: { url: 'postgres://a@db/stock', revokeSuperusers: false } },
      ],
    });
  });

  it('reports every problem at once, with its path', () => {
    const issues = issuesOf(() =>
      parseAdapterConfig(
        {
          adapterId: 'PG main',
          stateDir: '/state',
          verifyIntervalMs: 500,
          retry: { initialMs: 5_000, maxMs: 1_000 },
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
        { adapterId: 'pg-main', stateDir: '/state', systems: { 'Stock DB': { url: 'postgres://x' }, 'ledger-db': { url: 'mysql://x', exemptPrincipals: [''] } } },
        SystemSchema,
      ),
    );
    expect(systemIssues).toEqual([
      'systems.Stock DB: system id must be a lower-case slug',
      expect.stringMatching(/^systems\.ledger-db\.exemptPrincipals\.0: /),
      expect.stringMatching(/^systems\.ledger-db\.url: /),
    ]);
  });

  it('requires at least one system and a state directory', () => {
    expect(issuesOf(() => parseAdapterConfig({ adapterId: 'pg-main', systems: {} }, SystemSchema))).toEqual([
      expect.stringMatching(/^stateDir: /),
      'systems: at least one system must be configured',
    ]);
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
      systems: [{ systemId: 'stock-db' }],
    });
  });

  it('works from the environment alone', () => {
    const config = loadAdapterConfig(
      {
        ADAPTER_ID: 'pg-main',
        ADAPTER_STATE_DIR: '/state',
        ADAPTER_SYSTEMS: JSON.stringify({ 'stock-db': { url: 'postgres://a@db/stock' } }),
      },
      SystemSchema,
    );
    expect(config.systems.map((system) => system.systemId)).toEqual(['stock-db']);
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
