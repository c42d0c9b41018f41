import {
  ADAPTER_HEARTBEAT,
  AdapterHeartbeatV1Schema,
  encodeSignedMessage,
  envelopeHeader,
  type AdapterHeartbeatV1,
} from '@portcullis/contracts';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { testKeys } from '@test/support/test-keys';
import { randomBytes } from 'node:crypto';
import { AdaptersService } from '../src/adapters/adapters.service';

/**
 * An adapter whose state store failed is alive — it keeps sending heartbeats — but takes and enforces no
 * decision until it is restarted. Its heartbeats say so; the centre shows it as `failed` and audits the
 * change once, and `adapter.recovered` when a heartbeat says the store works again. Heartbeats are signed
 * with the registered adapter key and recorded through the service itself.
 */
describe('adapters whose state store failed', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const adapterId = `store-adapter-${suffix}`;
  const systemId = `store-s1-${suffix}`;
  let service: RunningPolicyService;
  let api: PolicyApi;
  let adapters: AdaptersService;
  let beats = 0;
  const firstBeatAt = Date.now() - 60_000;

  function heartbeat(
    stateStore?: AdapterHeartbeatV1['data']['stateStore'],
    instance = { instanceId: `${adapterId}-1`, startedAt: '2026-11-29T00:00:00.000Z' },
  ): [AdapterHeartbeatV1, Buffer] {
    beats += 1;
    const message: AdapterHeartbeatV1 = {
      // One second apart, in the order they are made, and recent: the adapter must not look stale (silent).
      ...envelopeHeader(`adapter-postgres/${adapterId}`, new Date(firstBeatAt + beats * 1_000)),
      type: ADAPTER_HEARTBEAT,
      version: 1,
      data: {
        adapterId,
        adapterKind: 'postgres',
        ...instance,
        intervalMs: 600_000, // never stale during the spec
        ...(stateStore ? { stateStore } : {}),
        systems: [{ systemId, desiredState: 'active', desiredGeneration: 0, enforcedGeneration: 0 }],
      },
    };
    return [message, Buffer.from(encodeSignedMessage(AdapterHeartbeatV1Schema, message, testKeys.adapter(adapterId)))];
  }

  const listed = async () =>
    (await api.get<{ id: string; status: string; instanceId: string; stateStore: unknown }[]>('/adapters')).find((a) => a.id === adapterId);
  const audited = async () =>
    (
      await service.db.query<{ action: string; reason: string }>(
        `SELECT action, reason FROM audit_entries WHERE actor = $1 AND action LIKE 'adapter.%' ORDER BY seq`,
        [`adapter:${adapterId}`],
      )
    ).rows;

  beforeAll(async () => {
    service = await startPolicyService(env);
    api = new PolicyApi(service);
    await api.registerSystem(systemId, adapterId);
    adapters = service.app.get(AdaptersService);
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('shows the adapter as failed while its heartbeats say so, and audits each change once', async () => {
    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }));
    expect(await listed()).toMatchObject({ status: 'online', stateStore: { status: 'ok' } });

    const error = 'state directory /var/lib/portcullis is no longer ours: another instance took the lease over';
    await adapters.recordHeartbeat(...heartbeat({ status: 'failed', error }));
    await adapters.recordHeartbeat(...heartbeat({ status: 'failed', error }));
    expect(await listed()).toMatchObject({ status: 'failed', stateStore: { status: 'failed', error } });

    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }));
    expect(await listed()).toMatchObject({ status: 'online', stateStore: { status: 'ok' } });

    expect(await audited()).toEqual([
      { action: 'adapter.failed', reason: `state store failed: ${error}` },
      { action: 'adapter.recovered', reason: 'state store works again' },
    ]);
  });

  it('changes nothing for an older heartbeat arriving late, nor for one that does not say', async () => {
    const [late, lateRaw] = heartbeat({ status: 'failed', error: 'disk full' });
    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }));
    await adapters.recordHeartbeat(late, lateRaw); // older than the one recorded
    expect(await listed()).toMatchObject({ status: 'online' });

    await adapters.recordHeartbeat(...heartbeat()); // an adapter from before the field
    expect(await listed()).toMatchObject({ status: 'online', stateStore: null });
    expect((await audited()).map((entry) => entry.action)).toEqual(['adapter.failed', 'adapter.recovered']);
  });

  it('ignores an older instance still running next to its replacement: no flapping, no audit', async () => {
    const replacement = { instanceId: `${adapterId}-2`, startedAt: '2026-11-29T00:30:00.000Z' };
    const old = { instanceId: `${adapterId}-1`, startedAt: '2026-11-29T00:00:00.000Z' };
    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }, replacement));
    // The old instance lost its directory to the replacement: its store failed, and it still beats.
    await adapters.recordHeartbeat(...heartbeat({ status: 'failed', error: 'no longer ours' }, old));
    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }, replacement));
    await adapters.recordHeartbeat(...heartbeat({ status: 'failed', error: 'no longer ours' }, old));

    expect(await listed()).toMatchObject({ status: 'online', instanceId: replacement.instanceId, stateStore: { status: 'ok' } });
    expect((await audited()).map((entry) => entry.action)).toEqual(['adapter.failed', 'adapter.recovered']);
  });

  it('audits a change once when heartbeats of one adapter are recorded at the same time', async () => {
    const instance = { instanceId: `${adapterId}-3`, startedAt: '2026-11-29T00:45:00.000Z' };
    await adapters.recordHeartbeat(...heartbeat({ status: 'ok' }, instance));
    const failing = [heartbeat({ status: 'failed', error: 'disk full' }, instance), heartbeat({ status: 'failed', error: 'disk full' }, instance)];
    await Promise.all(failing.map(([message, raw]) => adapters.recordHeartbeat(message, raw)));

    expect(await listed()).toMatchObject({ status: 'failed' });
    expect((await audited()).map((entry) => entry.action)).toEqual(['adapter.failed', 'adapter.recovered', 'adapter.failed']);
  });
});
