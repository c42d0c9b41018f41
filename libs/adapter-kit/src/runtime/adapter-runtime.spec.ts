import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { encodeSignedMessage, signMessage, SystemAccessChangedV1Schema, type SystemAccessChangedV1 } from '@portcullis/contracts';
import { eventually } from '@test/support/eventually';
import type { AccessEnforcer, EnforcementContext, EnforcementResult } from '../access-enforcer';
import { CorruptJournalError } from '../enforcement-journal';
import { JsonLogger } from '../logging/json.logger';
import { AdapterStateError } from '../state/adapter-state.error';
import { LogStructuredStateStore } from '../state/log-structured-state.store';
import { startAdapter } from '../start-adapter';
import type { SystemStateRecord } from '../state/system-state';
import {
  FakeAccessEnforcer,
  FakeDesiredStateSource,
  FakeSystemConfigSchema,
  RecordingEventPublisher,
  systemAccessChanged,
  testAdapterKeySettings,
  testPolicySigningKey,
  type FakeSystemConfig,
} from '../testing';
import type { RunningAdapter } from './running-adapter';

const STOCK = 'stock-db';
const LEDGER = 'ledger-db';

/** One adapter's surroundings; `start()` can be called again to simulate a restart on the same state dir. */
class AdapterHarness {
  /** Replace before `start()` for a source whose catch-up a spec ends itself. */
  source = new FakeDesiredStateSource();
  readonly publisher = new RecordingEventPublisher();
  readonly logLines: Record<string, unknown>[] = [];
  private readonly running: RunningAdapter[] = [];

  constructor(
    public enforcer: AccessEnforcer<FakeSystemConfig> = new FakeAccessEnforcer(),
    readonly stateDir = mkdtempSync(path.join(tmpdir(), 'adapter-runtime-')),
  ) {}

  async start(settings: { verifyIntervalMs?: number; deliveredAckDelayMs?: number; retry?: { initialMs: number; maxMs: number } } = {}): Promise<RunningAdapter> {
    const adapter = await startAdapter({
      enforcer: this.enforcer,
      systemConfigSchema: FakeSystemConfigSchema,
      config: {
        adapterId: 'fake-main',
        stateDir: this.stateDir,
        heartbeatIntervalMs: 100,
        retry: { initialMs: 20, maxMs: 80 },
        // These specs follow both acknowledgements; the delay has specs of its own below.
        deliveredAckDelayMs: 0,
        ...testAdapterKeySettings(),
        ...settings,
        systems: { [STOCK]: { exemptPrincipals: ['local-dba'] }, [LEDGER]: {} },
      },
      logger: new JsonLogger({ level: 'debug', write: (line) => this.logLines.push(JSON.parse(line)) }),
      transport: { source: this.source, publisher: this.publisher },
    });
    this.running.push(adapter);
    return adapter;
  }

  /** The stored record of a system, as `LogStructuredStateStore` would load it: its last log line, or the snapshot's. */
  stateFile(systemId: string): SystemStateRecord {
    const snapshot = JSON.parse(readFileSync(path.join(this.stateDir, 'state.snapshot.json'), 'utf8'));
    const log = readFileSync(path.join(this.stateDir, `state.${snapshot.log}.log`), 'utf8').split('\n').slice(0, -1);
    const records: SystemStateRecord[] = [...snapshot.records, ...log.map((line) => JSON.parse(line))];
    return records.filter((record) => record.systemId === systemId).at(-1)!;
  }

  warnings(): string[] {
    return this.logLines.filter((line) => line.level === 'warn').map((line) => String(line.msg));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.running.map((adapter) => adapter.stop()));
  }
}

function expectConverged(adapter: RunningAdapter, systemId: string, generation: number): void {
  const status = adapter.system(systemId);
  expect(status?.applied?.generation).toBe(generation);
  expect(status?.converged).toBe(true);
}

describe('AdapterRuntime', () => {
  let harness: AdapterHarness;
  let fake: FakeAccessEnforcer;

  beforeEach(() => {
    fake = new FakeAccessEnforcer();
    harness = new AdapterHarness(fake);
  });

  afterEach(() => harness.stopAll());

  it('stores a new decision, acknowledges delivery, enforces it and acknowledges enforcement', async () => {
    const adapter = await harness.start();
    const decision = systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked', exemptPrincipals: ['breakglass'] });

    await harness.source.deliver(decision);
    expect(harness.stateFile(STOCK).desired).toMatchObject({ generation: 1, state: 'revoked', commandId: decision.commandId });
    await eventually(() => expectConverged(adapter, STOCK, 1));

    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
    const enforced = harness.publisher.acknowledgements[1];
    expect(enforced).toMatchObject({
      commandId: decision.commandId,
      generation: 1,
      producer: 'adapter-fake/fake-main',
      data: { adapterId: 'fake-main', systemId: STOCK, desiredState: 'revoked', detail: 'fake target now revoked', principalsChanged: 1 },
    });
    expect(fake.calls).toEqual([expect.objectContaining({ action: 'revoke', systemId: STOCK, generation: 1 })]);
    expect([...fake.calls[0].exemptPrincipals].sort()).toEqual(['breakglass', 'local-dba']);
    expect(harness.stateFile(STOCK)).toMatchObject({
      applied: { generation: 1, state: 'revoked' },
      deliveredAckGeneration: 1,
      enforcedAckGeneration: 1,
    });
  });

  it('refuses and reports a replayed message and an older generation, and changes nothing', async () => {
    const adapter = await harness.start();
    const decision = systemAccessChanged({ systemId: STOCK, generation: 2, state: 'revoked' });
    const signed = encodeSignedMessage(SystemAccessChangedV1Schema, decision, testPolicySigningKey);
    await harness.source.deliverRaw(STOCK, signed);
    await eventually(() => expectConverged(adapter, STOCK, 2));

    await harness.source.deliverRaw(STOCK, signed); // the same bytes, appended again
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'active' }));

    expect(adapter.system(STOCK)?.desired?.generation).toBe(2);
    expect(fake.calls).toHaveLength(1);
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@2', 'enforced@2', 'alert:replayed', 'alert:rolled-back']);
    expect(harness.publisher.alerts[1].data).toMatchObject({
      adapterId: 'fake-main',
      severity: 'high',
      record: { generation: 1, desiredState: 'active', keyId: testPolicySigningKey.keyId },
    });
  });

  it('takes a re-issue of the decision it holds as a renewal: no enforcement, no alert', async () => {
    const adapter = await harness.start();
    const decision = systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' });
    await harness.source.deliver(decision);
    await eventually(() => expectConverged(adapter, STOCK, 1));

    const reissue = { ...decision, messageId: randomUUID(), data: { ...decision.data, expiresAt: new Date(Date.now() + 7_200_000).toISOString() } };
    await harness.source.deliver(reissue);

    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
    expect(fake.calls).toHaveLength(1);
    expect(harness.stateFile(STOCK).desired).toMatchObject({ messageId: reissue.messageId, expiresAt: reissue.data.expiresAt });
  });

  it('enforces a decision whose storing failed once it is delivered again (same record)', async () => {
    const adapter = await harness.start();
    const bytes = encodeSignedMessage(SystemAccessChangedV1Schema, systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }), testPolicySigningKey);
    const save = jest.spyOn(LogStructuredStateStore.prototype, 'save').mockRejectedValueOnce(new Error('disk full'));
    try {
      await expect(harness.source.deliverRaw(STOCK, bytes, { offset: 40 })).rejects.toThrow('disk full');
    } finally {
      save.mockRestore();
    }
    await harness.source.deliverRaw(STOCK, bytes, { offset: 40 }); // the source delivers the record again

    await eventually(() => expectConverged(adapter, STOCK, 1));
    // `delivered` ("decision stored") only if it went out after a save succeeded; either way `enforced` last.
    expect(harness.publisher.trail(STOCK).filter((entry) => entry !== 'delivered@1')).toEqual(['enforced@1']);
    expect(harness.stateFile(STOCK)).toMatchObject({ desired: { generation: 1 }, lastRecord: { offset: '40' } });
  });

  it('does not acknowledge a decision as delivered ("decision stored") while its save fails', async () => {
    const adapter = await harness.start();
    const save = jest.spyOn(LogStructuredStateStore.prototype, 'save').mockRejectedValue(new Error('disk full'));
    try {
      await expect(harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }))).rejects.toThrow('disk full');
      await new Promise((resolve) => setTimeout(resolve, 150)); // passes and retries run meanwhile
      expect(harness.publisher.trail(STOCK)).not.toContain('delivered@1');
    } finally {
      save.mockRestore();
    }
    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.publisher.trail(STOCK).at(-1)).toBe('enforced@1');
  });

  it('enforces a decision whose storing failed when another save stored it meanwhile, although the record, delivered again, is then history', async () => {
    const adapter = await harness.start({ retry: { initialMs: 400, maxMs: 400 } }); // time to park the retry
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expectConverged(adapter, STOCK, 1));
    // The restore fails once; its retry (a pass of its own, started by the retry timer) is inside the target.
    fake.respondWith(STOCK, { outcome: 'failed-retriable', detail: 'target unreachable' });
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));
    await eventually(() => expect(harness.publisher.trail(STOCK)).toContain('failed(willRetry=true)@2'));
    const slowRestore = fake.hold(STOCK);
    await slowRestore.reached;

    const revokeAt = harness.source.nextOffset;
    const bytes = encodeSignedMessage(SystemAccessChangedV1Schema, systemAccessChanged({ systemId: STOCK, generation: 3, state: 'revoked' }), testPolicySigningKey);
    const save = jest.spyOn(LogStructuredStateStore.prototype, 'save').mockRejectedValueOnce(new Error('disk full'));
    try {
      await expect(harness.source.deliverRaw(STOCK, bytes, { offset: revokeAt })).rejects.toThrow('disk full');
    } finally {
      save.mockRestore();
    }
    // The restore returns, superseded; its save stores the whole record, the revoke and its record included.
    slowRestore.release();
    await eventually(() => expect(harness.stateFile(STOCK)).toMatchObject({ desired: { generation: 3 }, lastRecord: { offset: String(revokeAt) } }));
    await harness.source.deliverRaw(STOCK, bytes, { offset: revokeAt }); // delivered again: history now, skipped

    await eventually(() => expectConverged(adapter, STOCK, 3));
    expect(fake.calls.map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@1', 'restore@2', 'restore@2', 'revoke@3']);
    expect(fake.targets.get(STOCK)).toBe('revoked');
  });

  it('refuses an earlier issue of the decision it holds, replayed after a renewal', async () => {
    const adapter = await harness.start();
    const decision = systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked', exemptPrincipals: ['old-breakglass'] });
    const firstIssue = encodeSignedMessage(SystemAccessChangedV1Schema, decision, testPolicySigningKey);
    await harness.source.deliverRaw(STOCK, firstIssue);
    await eventually(() => expectConverged(adapter, STOCK, 1));
    const renewal = {
      ...decision,
      messageId: randomUUID(),
      data: { ...decision.data, exemptPrincipals: [], expiresAt: new Date(Date.now() + 7_200_000).toISOString() },
    };
    await harness.source.deliver(renewal);

    await harness.source.deliverRaw(STOCK, firstIssue); // the first issue again, as a new record
    await harness.source.deliver({ ...decision, messageId: randomUUID() }); // or a re-signed copy with the old expiry

    expect(harness.publisher.alerts.map((alert) => alert.data.reason)).toEqual(['replayed', 'replayed']);
    expect(harness.stateFile(STOCK).desired).toMatchObject({ messageId: renewal.messageId, exemptPrincipals: [] });
  });

  it('flags a second, different decision at a generation it holds as critical, and keeps the first', async () => {
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 4, state: 'revoked' }));
    await eventually(() => expectConverged(adapter, STOCK, 4));

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 4, state: 'active' }));

    expect(harness.publisher.alerts.map((alert) => [alert.data.reason, alert.data.severity])).toEqual([['conflicting-generation', 'critical']]);
    expect(fake.targets.get(STOCK)).toBe('revoked');
    expect(adapter.system(STOCK)?.desired?.state).toBe('revoked');
  });

  it('does not alert again, after a restart, about records it judged before; judges new ones', async () => {
    await harness.start();
    const first = systemAccessChanged({ systemId: STOCK, generation: 2, state: 'revoked' });
    await harness.source.deliver(first);
    const forgedAt = harness.source.nextOffset;
    await harness.source.deliverRaw(STOCK, JSON.stringify(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'active' })));
    await eventually(() => expect(harness.publisher.trail(STOCK).sort()).toEqual(['alert:unsigned', 'delivered@2', 'enforced@2']));
    await harness.stopAll();

    const restarted = await harness.start();
    // The topic read again from its beginning: the decision and the refused record, at their offsets.
    await harness.source.deliverRaw(STOCK, encodeSignedMessage(SystemAccessChangedV1Schema, first, testPolicySigningKey), { offset: 0, catchUp: true });
    await harness.source.deliverRaw(STOCK, JSON.stringify(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'active' })), {
      offset: forgedAt,
      catchUp: true,
    });
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'active' }));

    expect(harness.publisher.alerts.map((alert) => alert.data.reason)).toEqual(['unsigned', 'rolled-back']);
    expect(restarted.system(STOCK)?.desired).toMatchObject({ generation: 2, state: 'revoked' });
  });

  it('judges afresh a partition that now ends before the last record it judged (the topic recreated or truncated)', async () => {
    await harness.start();
    const sign = (event: SystemAccessChangedV1) => encodeSignedMessage(SystemAccessChangedV1Schema, event, testPolicySigningKey);
    const revoke = sign(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'revoked' }));
    await harness.source.deliverRaw(STOCK, revoke, { offset: 100 });
    await eventually(() => expect(harness.publisher.trail(STOCK)).toContain('enforced@2'));
    await harness.stopAll();

    // The topic, recreated, holds the decisions again at low offsets; the policy service then decides anew.
    const restarted = await harness.start();
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'active' })), { offset: 0, catchUp: true, partitionEnd: 2 });
    await harness.source.deliverRaw(STOCK, revoke, { offset: 1, catchUp: true, partitionEnd: 2 });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'active' })), { offset: 2, partitionEnd: 2 });

    await eventually(() => expectConverged(restarted, STOCK, 3));
    expect(fake.calls.map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@2', 'restore@3']);
    expect(harness.publisher.alerts).toEqual([]); // the older generations are history here, not rollbacks
    const errors = harness.logLines.filter((line) => line.level === 'error').map((line) => String(line.msg));
    expect(errors).toEqual([expect.stringContaining('the topic was recreated or truncated')]);
    expect(harness.stateFile(STOCK).lastRecord).toMatchObject({ offset: '2' });
  });

  it('takes a position judged in this run beyond where the partition ended at assignment as it is (no reset)', async () => {
    const adapter = await harness.start();
    const sign = (event: SystemAccessChangedV1) => encodeSignedMessage(SystemAccessChangedV1Schema, event, testPolicySigningKey);
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' })), { offset: 10, partitionEnd: 5 });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' })), { offset: 10, partitionEnd: 5 });
    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.logLines.filter((line) => line.level === 'error')).toEqual([]);
    expect(fake.calls).toHaveLength(1);
  });

  it('passes over expired decisions in the topic history when it starts fresh, and refuses an expired new one', async () => {
    const adapter = await harness.start();
    const expired = systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked', expiresAt: new Date(Date.now() - 1000) });
    const current = systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' });
    const sign = (event: SystemAccessChangedV1) => encodeSignedMessage(SystemAccessChangedV1Schema, event, testPolicySigningKey);
    await harness.source.deliverRaw(STOCK, sign(expired), { catchUp: true });
    await harness.source.deliverRaw(STOCK, sign(current), { catchUp: true });
    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(harness.publisher.alerts).toEqual([]);

    await harness.source.deliverRaw(
      STOCK,
      sign(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'revoked', expiresAt: new Date(Date.now() - 1000) })),
    );
    expect(harness.publisher.alerts.map((alert) => alert.data.reason)).toEqual(['expired']);
    expect(fake.calls.map((call) => call.action)).toEqual(['restore']);
  });

  it('acknowledges a quick enforcement once, as enforced, without a delivered before it', async () => {
    const adapter = await harness.start({ deliveredAckDelayMs: 500 });
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expectConverged(adapter, STOCK, 1));
    await new Promise((resolve) => setTimeout(resolve, 700)); // past the delay: no late delivered either
    expect(harness.publisher.trail(STOCK)).toEqual(['enforced@1']);
    expect(harness.stateFile(STOCK)).toMatchObject({ deliveredAckGeneration: 1, enforcedAckGeneration: 1 });
  });

  it('acknowledges delivered once the delay has passed while the enforcement is still running, then enforced', async () => {
    const adapter = await harness.start({ deliveredAckDelayMs: 100 });
    const slow = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await slow.reached;
    await eventually(() => expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1']));
    slow.release();
    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
  });

  it('converges to the newest decision when decisions arrive out of order', async () => {
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'revoked' }));
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));

    await eventually(() => expectConverged(adapter, STOCK, 3));
    expect(fake.targets.get(STOCK)).toBe('revoked');
    expect(fake.calls.map((call) => call.generation)).toEqual([3]);
  });

  it('lets a decision that arrives during an enforcement win, without acknowledging the older one as enforced', async () => {
    const adapter = await harness.start();
    const slowRevoke = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await slowRevoke.reached;

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));
    slowRevoke.release();

    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(fake.calls.map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@1', 'restore@2']);
    expect(fake.targets.get(STOCK)).toBe('active');
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'delivered@2', 'enforced@2']);
  });

  it('retries a retriable failure with exponential back-off, then acknowledges enforcement', async () => {
    fake.respondWith(
      STOCK,
      { outcome: 'failed-retriable', detail: 'target unreachable' },
      { outcome: 'failed-retriable', detail: 'target unreachable' },
    );
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));

    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual([
      'delivered@1',
      'failed(willRetry=true)@1',
      'failed(willRetry=true)@1',
      'enforced@1',
    ]);
    const [first, second, third] = fake.calls.map((call) => call.at);
    // 20 ms, then 40 ms, less up to a fifth (jitter); and the second wait is the longer.
    expect(second - first).toBeGreaterThanOrEqual(16 - 2);
    expect(third - second).toBeGreaterThanOrEqual(32 - 2);
    expect(adapter.system(STOCK)).toMatchObject({ failures: 0, lastError: undefined });
  });

  it('does not retry a permanent failure until a newer decision arrives', async () => {
    fake.respondWith(STOCK, { outcome: 'failed-permanent', detail: 'permission denied to alter role' });
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));

    await eventually(() => expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'failed(willRetry=false)@1']));
    // Several back-off periods (20, 40, 80 ms) pass without another attempt.
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(fake.calls).toHaveLength(1);
    expect(adapter.system(STOCK)).toMatchObject({
      converged: false,
      nextRetryAt: undefined,
      lastError: { source: 'enforcement', detail: 'permission denied to alter role', generation: 1 },
    });

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'revoked' }));
    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(fake.calls).toHaveLength(2);
  });

  it('sends a permanent failure the broker did not take once it takes it again, without enforcing again', async () => {
    fake.respondWith(STOCK, { outcome: 'failed-permanent', detail: 'permission denied to alter role' });
    await harness.start();
    harness.publisher.failure = new Error('broker down');
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expect(fake.calls).toHaveLength(1));
    await new Promise((resolve) => setTimeout(resolve, 100)); // a few back-off periods with the broker down
    expect(harness.publisher.trail(STOCK)).toEqual([]);

    harness.publisher.failure = undefined;
    await eventually(() => expect(harness.publisher.trail(STOCK)).toContain('failed(willRetry=false)@1'));
    expect(fake.calls).toHaveLength(1);
  });

  it('treats an enforcer that throws as a retriable failure', async () => {
    const flaky: AccessEnforcer<FakeSystemConfig> = {
      kind: 'fake',
      revoke: jest.fn().mockRejectedValueOnce(new Error('socket hang up')).mockResolvedValue({ outcome: 'applied', detail: 'done' }),
      restore: jest.fn(),
      inspect: jest.fn(),
    };
    harness.enforcer = flaky;
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));

    await eventually(() => expectConverged(adapter, STOCK, 1));
    const failed = harness.publisher.acknowledgements.find((ack) => ack.data.status === 'failed');
    expect(failed?.data).toMatchObject({ willRetry: true, detail: 'fake enforcer threw: socket hang up' });
  });

  it('reports a journal the enforcer cannot read as a permanent failure, without retrying', async () => {
    const revoke = jest.fn().mockRejectedValue(new CorruptJournalError('the stored journal does not match'));
    harness.enforcer = { kind: 'fake', revoke, restore: jest.fn(), inspect: jest.fn() };
    await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));

    const failed = await eventually(() => {
      const ack = harness.publisher.acknowledgements.find((candidate) => candidate.data.status === 'failed');
      expect(ack).toBeDefined();
      return ack!;
    });
    expect(failed.data).toMatchObject({ willRetry: false, detail: 'the stored journal does not match' });
    expect(revoke).toHaveBeenCalledTimes(1);
  });

  it('retries an acknowledgement the broker did not take', async () => {
    harness.publisher.failure = new Error('broker unreachable');
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expect(adapter.system(STOCK)?.lastError?.source).toBe('acknowledgement'));

    harness.publisher.failure = undefined;
    await eventually(() => expectConverged(adapter, STOCK, 1));
    // The `delivered` the broker refused is not sent late: by then the revoke is enforced, and `enforced` says more.
    expect(harness.publisher.trail(STOCK)).toEqual(['enforced@1']);
    expect(fake.calls).toHaveLength(1);
  });

  it('sends no `delivered` once the decision is enforced, however late its timer comes back', async () => {
    // A busy adapter: storing the enforcement's outcome takes longer than the delay, so the delivery timer
    // comes back between the enforcement and its acknowledgement.
    const adapter = await harness.start({ deliveredAckDelayMs: 50 });
    const save = LogStructuredStateStore.prototype.save;
    const slowSave = jest.spyOn(LogStructuredStateStore.prototype, 'save').mockImplementation(async function (this: LogStructuredStateStore, record) {
      if (record.applied) await new Promise((resolve) => setTimeout(resolve, 150));
      return save.call(this, record);
    });
    try {
      await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
      await eventually(() => expectConverged(adapter, STOCK, 1));
    } finally {
      slowSave.mockRestore();
    }
    expect(fake.calls).toHaveLength(1);
    expect(harness.publisher.trail(STOCK)).toEqual(['enforced@1']);
  });

  it('enforces without waiting for the broker to take its acknowledgements', async () => {
    const adapter = await harness.start();
    const release = harness.publisher.stall();

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expect(adapter.system(STOCK)?.applied?.generation).toBe(1));
    expect(harness.publisher.trail(STOCK)).toEqual([]);

    release();
    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
  });

  it('after a restart, re-sends an enforced acknowledgement that was never sent, without enforcing again', async () => {
    const first = await harness.start();
    const revoke = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await revoke.reached;
    harness.publisher.failure = new Error('broker unreachable'); // the enforced ack will not get out
    revoke.release();
    await eventually(() => expect(harness.stateFile(STOCK).applied?.generation).toBe(1));
    await first.stop();
    expect(harness.stateFile(STOCK).enforcedAckGeneration).toBe(0);

    harness.publisher.failure = undefined;
    const second = await harness.start();

    await eventually(() => expectConverged(second, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
    expect(fake.calls).toHaveLength(1);
  });

  it('after a crash mid-enforcement, enforces the stored decision again on start', async () => {
    const crashed = new AdapterHarness(new FakeAccessEnforcer());
    await crashed.start();
    const interrupted = (crashed.enforcer as FakeAccessEnforcer).hold(STOCK);
    const decision = systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' });
    await crashed.source.deliver(decision);
    await interrupted.reached;
    await eventually(() => expect(crashed.stateFile(STOCK).deliveredAckGeneration).toBe(1));
    // The process "dies" here: decision stored and acknowledged, enforcement begun, its outcome never recorded.
    // Its state directory as it is now, restored the way an operator restores a crash image: without
    // `state.lock`, whose lease (fresh, since the "crashed" adapter still renews it) would keep the
    // restarted adapter out until it turned stale.
    cpSync(crashed.stateDir, harness.stateDir, { recursive: true });
    rmSync(path.join(harness.stateDir, 'state.lock'));

    try {
      const adapter = await harness.start();
      await eventually(() => expectConverged(adapter, STOCK, 1));
      expect(fake.calls).toEqual([expect.objectContaining({ action: 'revoke', generation: 1, commandId: decision.commandId })]);
      expect(harness.publisher.trail(STOCK)).toEqual(['enforced@1']);
    } finally {
      interrupted.release();
      await crashed.stopAll();
    }
  });

  it('reports a failed state store in its status and its heartbeats, and logs it once', async () => {
    const adapter = await harness.start();
    expect(adapter.status().stateStore).toEqual({ status: 'ok' });
    await eventually(() => expect(harness.publisher.heartbeats.at(-1)?.data.stateStore).toEqual({ status: 'ok' }));
    const failure = new AdapterStateError('state directory /x is no longer ours: another instance took the lease over');
    const failed = jest.spyOn(LogStructuredStateStore.prototype, 'failure').mockReturnValue(failure);
    try {
      expect(adapter.status().stateStore).toEqual({ status: 'failed', error: failure.message });
      // The centre hears it from the heartbeats: the adapter is alive but takes no decision any more.
      await eventually(() => expect(harness.publisher.heartbeats.at(-1)?.data.stateStore).toEqual({ status: 'failed', error: failure.message }));
      expect(adapter.status().stateStore.status).toBe('failed');
    } finally {
      failed.mockRestore();
    }
    const errors = harness.logLines.filter((line) => line.level === 'error');
    expect(errors).toEqual([
      expect.objectContaining({
        msg: 'the state store failed: no decision can be stored or enforced until the adapter is restarted',
        error: expect.stringContaining('no longer ours'),
      }),
    ]);
  });

  it('keeps the enforcer journal across restarts', async () => {
    const journaling = new JournalingEnforcer();
    harness.enforcer = journaling;
    const first = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expectConverged(first, STOCK, 1));
    await first.stop();
    expect(harness.stateFile(STOCK).journal).toEqual({ revoked: ['alice', 'bob'] });

    const second = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));
    await eventually(() => expectConverged(second, STOCK, 2));

    expect(journaling.restored).toEqual(['alice', 'bob']);
    expect(harness.stateFile(STOCK).journal).toBeUndefined();
  });

  it('does not let one slow or failing system hold up another', async () => {
    const adapter = await harness.start();
    const stuck = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await stuck.reached;

    await harness.source.deliver(
      systemAccessChanged({ systemId: LEDGER, generation: 1, state: 'revoked' }),
    );
    await eventually(() => expectConverged(adapter, LEDGER, 1));
    expect(adapter.system(STOCK)).toMatchObject({ reconciling: true, converged: false });

    stuck.release();
    await eventually(() => expectConverged(adapter, STOCK, 1));
  });

  it('refuses, and reports, every record for its systems that is not a valid signed decision for it', async () => {
    const adapter = await harness.start();
    const attacker = { keyId: testPolicySigningKey.keyId, privateKey: generateKeyPairSync('ed25519').privateKey };
    const sign = (event: SystemAccessChangedV1, key = testPolicySigningKey) => encodeSignedMessage(SystemAccessChangedV1Schema, event, key);
    const restore = () => systemAccessChanged({ systemId: STOCK, generation: 9, state: 'active' });
    const tampered = JSON.parse(sign(systemAccessChanged({ systemId: STOCK, generation: 9, state: 'revoked' })));
    tampered.data.desiredState = 'active';

    await harness.source.deliverRaw(STOCK, 'not json');
    await harness.source.deliverRaw(STOCK, JSON.stringify(restore()));
    await harness.source.deliverRaw(STOCK, sign(restore(), { keyId: 'policy-unknown', privateKey: attacker.privateKey }));
    await harness.source.deliverRaw(STOCK, sign(restore(), attacker));
    await harness.source.deliverRaw(STOCK, JSON.stringify(tampered));
    await harness.source.deliverRaw(STOCK, JSON.stringify(signMessage({ ...restore(), generation: -1 }, testPolicySigningKey)));
    await harness.source.deliverRaw(LEDGER, sign(restore())); // a decision for STOCK, re-keyed onto LEDGER
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 9, state: 'active', adapterId: 'pg-other' }));
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 9, state: 'active', systemKind: 'ldap' }));
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 9, state: 'active', expiresAt: new Date(Date.now() - 1) }));
    await harness.source.deliverRaw(STOCK, null);
    await harness.source.deliver(systemAccessChanged({ systemId: 'billing-db', generation: 1, state: 'revoked' }));

    expect(harness.publisher.alerts.map((alert) => `${alert.data.systemId === STOCK ? 'stock' : 'ledger'}:${alert.data.reason}`)).toEqual([
      'stock:unsigned',
      'stock:unsigned',
      'stock:unknown-key',
      'stock:bad-signature',
      'stock:bad-signature',
      'stock:malformed',
      'ledger:wrong-target',
      'stock:wrong-target',
      'stock:wrong-target',
      'stock:expired',
    ]);
    expect(harness.publisher.acknowledgements).toEqual([]);
    expect(fake.calls).toEqual([]);

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(fake.calls).toHaveLength(1);
  });

  it('publishes heartbeats with each system’s desired and enforced generation', async () => {
    await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 4, state: 'revoked' }));

    await eventually(() =>
      expect(harness.publisher.heartbeats.at(-1)?.data).toMatchObject({
        adapterId: 'fake-main',
        adapterKind: 'fake',
        intervalMs: 100,
        systems: expect.arrayContaining([
          { systemId: STOCK, desiredState: 'revoked', desiredGeneration: 4, enforcedGeneration: 4 },
          { systemId: LEDGER },
        ]),
      }),
    );
  });

  it('on stop, finishes the in-flight enforcement and its acknowledgement, then closes the publisher', async () => {
    const adapter = await harness.start();
    const revoke = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await revoke.reached;

    const stopped = adapter.stop();
    revoke.release();
    await stopped;

    expect(harness.stateFile(STOCK)).toMatchObject({ applied: { generation: 1 }, enforcedAckGeneration: 1 });
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
    expect(harness.publisher.closed).toBe(true);
    expect(harness.source.isConnected()).toBe(false);
  });
});

/** Remembers whom it revoked in the journal and gives exactly those back. */
class JournalingEnforcer implements AccessEnforcer<FakeSystemConfig> {
  readonly kind = 'fake';
  restored: string[] = [];

  async revoke(context: EnforcementContext<FakeSystemConfig>): Promise<EnforcementResult> {
    await context.journal.write({ revoked: ['alice', 'bob'] });
    return { outcome: 'applied', detail: 'revoked alice, bob', principalsChanged: 2 };
  }

  async restore(context: EnforcementContext<FakeSystemConfig>): Promise<EnforcementResult> {
    this.restored = context.journal.read<{ revoked: string[] }>()?.revoked ?? [];
    await context.journal.clear();
    return { outcome: 'applied', detail: `restored ${this.restored.join(', ')}` };
  }

  async inspect(): Promise<{ state: 'unknown'; detail: string }> {
    return { state: 'unknown', detail: 'not tracked' };
  }
}

describe('AdapterRuntime verification', () => {
  let harness: AdapterHarness;
  let fake: FakeAccessEnforcer;

  beforeEach(() => {
    fake = new FakeAccessEnforcer();
    harness = new AdapterHarness(fake);
  });

  afterEach(() => harness.stopAll());

  async function revokeAndConverge(adapter: RunningAdapter, systemId = STOCK): Promise<SystemAccessChangedV1> {
    const decision = systemAccessChanged({ systemId, generation: 1, state: 'revoked' });
    await harness.source.deliver(decision);
    await eventually(() => expectConverged(adapter, systemId, 1));
    return decision;
  }

  it('reports access that came back out of band as drift, revokes again and acknowledges that afresh', async () => {
    const adapter = await harness.start();
    const decision = await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active'); // someone re-enabled an account by hand
    fake.respondToInspectWith(STOCK, { state: 'active', detail: '1 account can log in: clerk', principals: ['clerk'] });

    await adapter.verifyNow(STOCK);

    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1', 'drift@1', 'enforced@1']);
    expect(harness.publisher.drifts).toEqual([
      expect.objectContaining({
        type: 'access.drift-detected',
        commandId: decision.commandId,
        generation: 1,
        producer: 'adapter-fake/fake-main',
        data: {
          adapterId: 'fake-main',
          systemId: STOCK,
          desiredState: 'revoked',
          observedState: 'active',
          detail: '1 account can log in: clerk',
          principals: ['clerk'],
        },
      }),
    ]);
    expect(harness.publisher.acknowledgements.at(-1)).toMatchObject({
      commandId: decision.commandId,
      generation: 1,
      data: { status: 'enforced', desiredState: 'revoked', detail: 'fake target now revoked', principalsChanged: 1 },
    });
    expect(fake.calls.map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@1', 'revoke@1']);
    expect([...fake.inspections[0].exemptPrincipals]).toEqual(['local-dba']);
    expect(fake.targets.get(STOCK)).toBe('revoked');
    expect(harness.warnings()).toEqual(['drift: access is back although it is revoked; enforcing again']);
    expect(adapter.system(STOCK)).toMatchObject({
      converged: true,
      lastVerification: { generation: 1, observedState: 'active', detail: '1 account can log in: clerk' },
    });
    expect(harness.stateFile(STOCK).drift).toBeUndefined();
  });

  it('publishes nothing while access is still revoked', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter);

    await adapter.verifyNow(STOCK);

    expect(fake.inspections).toHaveLength(1);
    expect(fake.calls).toHaveLength(1);
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1']);
    expect(adapter.system(STOCK)).toMatchObject({
      converged: true,
      lastVerification: { generation: 1, observedState: 'revoked', detail: 'fake target is revoked' },
    });
  });

  it('reports no drift when the target cannot be inspected, and notes why until a verification succeeds', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active');
    fake.respondToInspectWith(STOCK, { state: 'unknown', detail: 'connect ECONNREFUSED 10.0.0.5:5432' });

    await adapter.verifyNow(STOCK);

    expect(harness.publisher.drifts).toEqual([]);
    expect(fake.calls).toHaveLength(1);
    expect(adapter.system(STOCK)).toMatchObject({
      converged: true,
      lastError: { source: 'verification', detail: 'connect ECONNREFUSED 10.0.0.5:5432', generation: 1 },
    });
    expect(harness.warnings()).toEqual(['could not verify that access is still revoked; will try again']);

    jest.spyOn(fake, 'inspect').mockRejectedValueOnce(new Error('socket hang up'));
    await adapter.verifyNow(STOCK);
    expect(adapter.system(STOCK)?.lastError).toMatchObject({ source: 'verification', detail: 'fake enforcer threw: socket hang up' });
    expect(harness.publisher.drifts).toEqual([]);

    fake.targets.set(STOCK, 'revoked');
    await adapter.verifyNow(STOCK);
    expect(adapter.system(STOCK)?.lastError).toBeUndefined();
  });

  it('never verifies beside an enforcement of the same system, and never holds up another system', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter, STOCK);
    await revokeAndConverge(adapter, LEDGER);
    const slowRevoke = fake.hold(STOCK);
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'revoked' }));
    await slowRevoke.reached;

    const stockVerified = adapter.verifyNow(STOCK);
    await adapter.verifyNow(LEDGER);
    expect(fake.inspections.map((inspection) => inspection.systemId)).toEqual([LEDGER]);

    slowRevoke.release();
    await stockVerified;
    expect(fake.inspections.map((inspection) => inspection.systemId)).toEqual([LEDGER, STOCK]);
    expect(fake.overlaps).toEqual([]);
    expect(adapter.system(STOCK)?.lastVerification?.generation).toBe(2);
  });

  it('drops a verification that a newer decision overtook', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active');
    const slowInspection = fake.hold(STOCK);
    const verified = adapter.verifyNow(STOCK);
    await slowInspection.reached;

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));
    slowInspection.release();
    await verified;

    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(harness.publisher.drifts).toEqual([]);
    expect(fake.calls.map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@1', 'restore@2']);
    expect(adapter.system(STOCK)?.lastVerification).toBeUndefined();
  });

  it('verifies only systems that are revoked and converged', async () => {
    const adapter = await harness.start();
    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'active' }));
    await eventually(() => expectConverged(adapter, STOCK, 1));
    fake.respondWith(LEDGER, { outcome: 'failed-permanent', detail: 'permission denied' });
    await harness.source.deliver(systemAccessChanged({ systemId: LEDGER, generation: 1, state: 'revoked' }));
    await eventually(() => expect(harness.publisher.trail(LEDGER)).toEqual(['delivered@1', 'failed(willRetry=false)@1']));

    await adapter.verifyNow();

    expect(fake.inspections).toEqual([]);
    await expect(adapter.verifyNow('billing-db')).rejects.toThrow('does not serve system "billing-db"');
  });

  it('verifies revoked systems every verifyIntervalMs', async () => {
    const adapter = await harness.start({ verifyIntervalMs: 1_000 });
    await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active');

    await eventually(
      () => expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1', 'drift@1', 'enforced@1']),
      5_000,
    );
    expect(fake.targets.get(STOCK)).toBe('revoked');
  });

  it('retries a re-enforcement that fails, acknowledging the failure, until it succeeds', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active');
    fake.respondWith(STOCK, { outcome: 'failed-retriable', detail: 'target unreachable' });

    await adapter.verifyNow(STOCK);
    expect(adapter.system(STOCK)).toMatchObject({ converged: false, lastError: { source: 'enforcement', detail: 'target unreachable' } });

    await eventually(() => expectConverged(adapter, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual([
      'delivered@1',
      'enforced@1',
      'drift@1',
      'failed(willRetry=true)@1',
      'enforced@1',
    ]);
    expect(fake.targets.get(STOCK)).toBe('revoked');
  });

  it('does not acknowledge a re-enforcement that a newer decision superseded', async () => {
    const adapter = await harness.start();
    await revokeAndConverge(adapter);
    fake.targets.set(STOCK, 'active');
    fake.respondWith(STOCK, { outcome: 'failed-permanent', detail: 'permission denied' });
    await adapter.verifyNow(STOCK);

    await harness.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));

    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(harness.publisher.trail(STOCK)).toEqual([
      'delivered@1',
      'enforced@1',
      'drift@1',
      'failed(willRetry=false)@1',
      'delivered@2',
      'enforced@2',
    ]);
    expect(harness.stateFile(STOCK).drift).toBeUndefined();
  });

  it('re-enforces without waiting for the broker, and after a restart reports the drift and acknowledges', async () => {
    const first = await harness.start();
    await revokeAndConverge(first);
    fake.targets.set(STOCK, 'active');
    harness.publisher.failure = new Error('broker unreachable');

    await first.verifyNow(STOCK);
    expect(fake.targets.get(STOCK)).toBe('revoked');
    expect(harness.stateFile(STOCK).drift).toMatchObject({ generation: 1, reported: false, reenforced: true });
    expect(first.system(STOCK)).toMatchObject({ converged: false, lastError: { source: 'acknowledgement' } });
    await first.stop();

    harness.publisher.failure = undefined;
    const second = await harness.start();

    await eventually(() => expectConverged(second, STOCK, 1));
    expect(harness.publisher.trail(STOCK)).toEqual(['delivered@1', 'enforced@1', 'drift@1', 'enforced@1']);
    expect(fake.calls).toHaveLength(2);
    expect(harness.stateFile(STOCK).drift).toBeUndefined();
  });
});

describe('AdapterRuntime catching up with the topic on start', () => {
  let harness: AdapterHarness;
  let fake: FakeAccessEnforcer;
  const sign = (event: SystemAccessChangedV1) => encodeSignedMessage(SystemAccessChangedV1Schema, event, testPolicySigningKey);
  const actions = () => fake.calls.map((call) => `${call.action}@${call.generation}`);
  const settle = () => new Promise((resolve) => setTimeout(resolve, 150));

  beforeEach(() => {
    fake = new FakeAccessEnforcer();
    harness = new AdapterHarness(fake);
    harness.source = new FakeDesiredStateSource({ caughtUpAtStart: false });
  });

  afterEach(() => harness.stopAll());

  it('enforces only the latest decision of the history: no restore on the way to the revoke after it', async () => {
    const adapter = await harness.start();
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' })), { catchUp: true });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' })), { catchUp: true });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'revoked' })), { catchUp: true });
    await settle();
    // Stored and judged, nothing enforced or acknowledged yet.
    expect(harness.stateFile(STOCK).desired).toMatchObject({ generation: 3, state: 'revoked' });
    expect(actions()).toEqual([]);
    expect(harness.publisher.trail(STOCK)).toEqual([]);

    harness.source.endCatchUp();
    await eventually(() => expectConverged(adapter, STOCK, 3));
    expect(actions()).toEqual(['revoke@3']);
    expect(harness.publisher.trail(STOCK).every((entry) => entry.endsWith('@3'))).toBe(true);
    expect(harness.publisher.trail(STOCK).at(-1)).toBe('enforced@3');
  });

  it('cuts no one off on a fresh adapter whose history is a revoke and then a restore', async () => {
    const adapter = await harness.start();
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' })), { catchUp: true });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' })), { catchUp: true });
    harness.source.endCatchUp();
    await eventually(() => expectConverged(adapter, STOCK, 2));
    expect(actions()).toEqual(['restore@2']);
  });

  it('enforces a new record at once, and the systems held by catch-up when it ends', async () => {
    const adapter = await harness.start();
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' })), { catchUp: true });
    await harness.source.deliver(systemAccessChanged({ systemId: LEDGER, generation: 1, state: 'revoked' })); // new: not history
    await eventually(() => expectConverged(adapter, LEDGER, 1));
    expect(adapter.system(STOCK)?.converged).toBe(false);
    harness.source.endCatchUp();
    await eventually(() => expectConverged(adapter, STOCK, 1));
  });

  it('after a restart in the middle of catch-up, does not enforce a revoke it had only read from the history', async () => {
    await harness.start();
    const revoke = sign(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await harness.source.deliverRaw(STOCK, revoke, { offset: 0, catchUp: true });
    expect(harness.stateFile(STOCK).desired).toMatchObject({ generation: 1, readDuringCatchUp: true });
    await harness.stopAll(); // before catch-up ended: a deploy, a crash

    const restarted = await harness.start();
    await settle();
    expect(actions()).toEqual([]); // not "a stored revoke owed": it may be followed by a restore in the history
    await harness.source.deliverRaw(STOCK, revoke, { offset: 0, catchUp: true });
    await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' })), { offset: 1, catchUp: true });
    harness.source.endCatchUp();
    await eventually(() => expectConverged(restarted, STOCK, 2));
    expect(actions()).toEqual(['restore@2']);
    expect(harness.stateFile(STOCK).desired).not.toHaveProperty('readDuringCatchUp');
  });

  it('keeps a newer revoke read while a stored revoke is owed counting as owed across another restart', async () => {
    const first = new AdapterHarness(new FakeAccessEnforcer());
    const second = new AdapterHarness(new FakeAccessEnforcer());
    second.source = new FakeDesiredStateSource({ caughtUpAtStart: false });
    const firstHold = (first.enforcer as FakeAccessEnforcer).hold(STOCK);
    const secondHold = (second.enforcer as FakeAccessEnforcer).hold(STOCK);
    try {
      // Run 1: a revoke arrives live; its enforcement never finishes (the process dies).
      await first.start();
      await first.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 5, state: 'revoked' })); // offset 0
      await firstHold.reached;
      // Run 2: the stored revoke is owed and being enforced; catch-up reads a newer revoke; the process dies again.
      cpSync(first.stateDir, second.stateDir, { recursive: true });
      rmSync(path.join(second.stateDir, 'state.lock'));
      await second.start();
      await secondHold.reached;
      await second.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 6, state: 'revoked' })), { offset: 1, catchUp: true });
      expect(second.stateFile(STOCK).desired).toMatchObject({ generation: 6 });
      expect(second.stateFile(STOCK).desired).not.toHaveProperty('readDuringCatchUp');
      cpSync(second.stateDir, harness.stateDir, { recursive: true });
      rmSync(path.join(harness.stateDir, 'state.lock'));

      // Run 3: the revoke is enforced at once, without waiting for the catch-up to end.
      const third = await harness.start();
      await eventually(() => expectConverged(third, STOCK, 6));
      expect(actions()).toEqual(['revoke@6']);
    } finally {
      firstHold.release();
      secondHold.release();
      await first.stopAll();
      await second.stopAll();
    }
  });

  it('keeps retrying a stored revoke that failed on start while the history brings newer decisions', async () => {
    const crashed = new AdapterHarness(new FakeAccessEnforcer());
    await crashed.start();
    const interrupted = (crashed.enforcer as FakeAccessEnforcer).hold(STOCK);
    await crashed.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await interrupted.reached;
    cpSync(crashed.stateDir, harness.stateDir, { recursive: true });
    rmSync(path.join(harness.stateDir, 'state.lock'));
    try {
      // The target is down at first: the stored revoke fails twice, then goes through.
      fake.respondWith(STOCK, { outcome: 'failed-retriable', detail: 'target unreachable' }, { outcome: 'failed-retriable', detail: 'target unreachable' });
      const adapter = await harness.start();
      await harness.source.deliverRaw(STOCK, sign(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' })), { offset: 1, catchUp: true });
      // The history's restore waits for the end of the catch-up; the stored revoke is retried until it holds.
      await eventually(() => expect(adapter.system(STOCK)?.applied).toMatchObject({ generation: 1, state: 'revoked' }));
      expect(actions()).toEqual(['revoke@1', 'revoke@1', 'revoke@1']);
      // At most the first failure, reported before the history arrived; generation 1 is not acknowledged as enforced.
      expect(harness.publisher.trail(STOCK).every((entry) => entry === 'failed(willRetry=true)@1')).toBe(true);

      harness.source.endCatchUp();
      await eventually(() => expectConverged(adapter, STOCK, 2));
      expect(actions()).toEqual(['revoke@1', 'revoke@1', 'revoke@1', 'restore@2']);
    } finally {
      interrupted.release();
      await crashed.stopAll();
    }
  });

  it('on start, enforces a stored revoke at once, but holds a stored restore until the history is read', async () => {
    const crashed = new AdapterHarness(new FakeAccessEnforcer());
    const crashedFake = crashed.enforcer as FakeAccessEnforcer;
    await crashed.start();
    await crashed.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }));
    await eventually(() => expect(crashed.stateFile(STOCK).enforcedAckGeneration).toBe(1));
    const stockRestore = crashedFake.hold(STOCK);
    const ledgerRevoke = crashedFake.hold(LEDGER);
    await crashed.source.deliver(systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }));
    await crashed.source.deliver(systemAccessChanged({ systemId: LEDGER, generation: 1, state: 'revoked' }));
    await Promise.all([stockRestore.reached, ledgerRevoke.reached]);
    // The process "dies" with both decisions stored and neither enforced (see the crash spec above).
    cpSync(crashed.stateDir, harness.stateDir, { recursive: true });
    rmSync(path.join(harness.stateDir, 'state.lock'));
    try {
      const adapter = await harness.start();
      await eventually(() => expectConverged(adapter, LEDGER, 1)); // withdrawing access never waits for the topic
      await settle();
      expect(actions()).toEqual(['revoke@1']);
      expect(adapter.system(STOCK)).toMatchObject({ desired: { generation: 2, state: 'active' }, applied: { generation: 1 }, converged: false });

      harness.source.endCatchUp();
      await eventually(() => expectConverged(adapter, STOCK, 2));
      expect(actions()).toEqual(['revoke@1', 'restore@2']);
    } finally {
      stockRestore.release();
      ledgerRevoke.release();
      await crashed.stopAll();
    }
  });
});
