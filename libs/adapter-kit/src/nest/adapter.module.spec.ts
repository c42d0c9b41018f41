import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { parseAdapterConfig } from '../config/adapter-config';
import { JsonLogger } from '../logging/json.logger';
import { composeAdapter } from '../start-adapter';
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
      systems: [{ systemId: 'stock-db', converged: true, failures: 0 }],
    });
  });

  it('answers 503 while the adapter is not connected to Kafka', async () => {
    source.connected = false;
    const response = await request(app.getHttpServer()).get('/health').expect(503);
    expect(response.body).toMatchObject({ status: 'degraded', kafka: { connected: false } });
    source.connected = true;
  });

  it('stops the adapter when the application shuts down', async () => {
    await app.close();
    expect(publisher.closed).toBe(true);
    expect(source.isConnected()).toBe(false);
  });
});
