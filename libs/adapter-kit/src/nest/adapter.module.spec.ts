import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { parseAdapterConfig } from '../config/adapter-config';
import { JsonLogger } from '../logging/json.logger';
import { composeAdapter } from '../start-adapter';
import { AdapterStateError } from '../state/adapter-state.error';
import { LogStructuredStateStore } from '../state/log-structured-state.store';
import { FakeAccessEnforcer, FakeDesiredStateSource, FakeSystemConfigSchema, RecordingEventPublisher, testAdapterKeySettings } from '../testing';
import { AdapterModule } from './adapter.module';

describe('AdapterModule', () => {
  const source = new FakeDesiredStateSource();
  const publisher = new RecordingEventPublisher();
  let app: INestApplication;

  beforeAll(async () => {
    const config = parseAdapterConfig(
      {
        adapterId: 'fake-main',
        stateDir: mkdtempSync(path.join(tmpdir(), 'adapter-module-')),
        systems: { 'stock-db': {} },
        ...testAdapterKeySettings(),
      },
      FakeSystemConfigSchema,
    );
    const adapter = composeAdapter({
      enforcer: new FakeAccessEnforcer(),
      config,
      logger: new JsonLogger({ write: () => undefined }),
      transport: { source, publisher },
    });
    const moduleRef = await Test.createTestingModule({ imports: [AdapterModule.forAdapter(adapter)] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });

  it('starts the adapter with the application and reports its health', async () => {
    const response = await request(app.getHttpServer()).get('/health').expect(200);

    expect(response.body).toMatchObject({
      status: 'ok',
      adapterId: 'fake-main',
      kind: 'fake',
      kafka: { connected: true },
      stateStore: { status: 'ok' },
      systems: [{ systemId: 'stock-db', converged: true, failures: 0 }],
    });
  });

  it('answers 503 while the adapter is not connected to Kafka', async () => {
    source.connected = false;
    const response = await request(app.getHttpServer()).get('/health').expect(503);
    expect(response.body).toMatchObject({ status: 'degraded', kafka: { connected: false } });
    source.connected = true;
  });

  it('answers 503 while the state store is failed, whether or not Kafka is connected', async () => {
    const failure = new AdapterStateError('state log /x/state.1.log could not be cut back to 0 bytes after a failed write; restart the adapter');
    const failed = jest.spyOn(LogStructuredStateStore.prototype, 'failure').mockReturnValue(failure);
    try {
      const response = await request(app.getHttpServer()).get('/health').expect(503);
      expect(response.body).toMatchObject({ status: 'failed', kafka: { connected: true }, stateStore: { status: 'failed', error: failure.message } });
      source.connected = false;
      expect((await request(app.getHttpServer()).get('/health').expect(503)).body.status).toBe('failed');
    } finally {
      failed.mockRestore();
      source.connected = true;
    }
    expect((await request(app.getHttpServer()).get('/health').expect(200)).body).toMatchObject({ status: 'ok', stateStore: { status: 'ok' } });
  });

  it('stops the adapter when the application shuts down', async () => {
    await app.close();
    expect(publisher.closed).toBe(true);
    expect(source.isConnected()).toBe(false);
  });
});
