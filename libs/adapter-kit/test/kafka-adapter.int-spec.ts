import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import * as path from 'node:path';
import {
  AdapterHeartbeatV1Schema,
  AdapterReportV1Schema,
  decodeMessage,
  encodeSignedMessage,
  SystemAccessChangedV1Schema,
  Topics,
  type AdapterHeartbeatV1,
  type AdapterReportV1,
  type SystemAccessChangedV1,
} from '@portcullis/contracts';
import { createKafka, partitionForRoute, ReliableProducer } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { readTestEnv } from '@test/support/test-env';
import { AssignerProtocol, type Consumer } from 'kafkajs';
import { JsonLogger, startAdapter, type RunningAdapter } from '../src';
import {
  FakeAccessEnforcer,
  FakeSystemConfigSchema,
  systemAccessChanged as decisionFor,
  testAdapterKeySettings,
  testPolicySigningKey,
  type DecisionSpec,
} from '../src/testing';

const env = readTestEnv();
const kafka = createKafka({ brokers: env.kafka.brokers, clientId: 'adapter-kit-int-spec' });
const run = randomBytes(3).toString('hex');
const STOCK = `stock-${run}`;
const LEDGER = `ledger-${run}`;
const ADAPTER_ID = `kit-${run}`;

/** Everything published on a topic since the start of the spec, decoded with its contract. */
class TopicRecorder<T> {
  readonly messages: T[] = [];
  private readonly consumer: Consumer = kafka.consumer({ groupId: `recorder-${randomBytes(4).toString('hex')}` });

  constructor(
    private readonly topic: string,
    private readonly decode: (value: Buffer | null) => T,
  ) {}

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.consumer.run({ eachMessage: async ({ message }) => void this.messages.push(this.decode(message.value)) });
  }

  stop(): Promise<void> {
    return this.consumer.disconnect();
  }
}

describe('adapter runtime over Kafka', () => {
  const producer = new ReliableProducer(kafka);
  const reports = new TopicRecorder<AdapterReportV1>(Topics.acknowledgements, (value) => decodeMessage(AdapterReportV1Schema, value));
  const heartbeats = new TopicRecorder<AdapterHeartbeatV1>(Topics.adapterHeartbeats, (value) =>
    decodeMessage(AdapterHeartbeatV1Schema, value),
  );
  const adapters: RunningAdapter[] = [];

  async function publish(...decisions: SystemAccessChangedV1[]): Promise<void> {
    await producer.send(
      decisions.map((decision) => ({
        topic: Topics.systemAccess,
        key: decision.data.systemId,
        partitionKey: decision.data.adapterId, // where the policy service routes it
        value: encodeSignedMessage(SystemAccessChangedV1Schema, decision, testPolicySigningKey),
      })),
    );
  }

  async function start(enforcer: FakeAccessEnforcer, stateDir: string): Promise<RunningAdapter> {
    const adapter = await startAdapter({
      enforcer,
      systemConfigSchema: FakeSystemConfigSchema,
      config: {
        adapterId: ADAPTER_ID,
        stateDir,
        heartbeatIntervalMs: 500,
        retry: { initialMs: 100, maxMs: 1_000 },
        kafka: { brokers: env.kafka.brokers },
        ...testAdapterKeySettings(),
        systems: { [STOCK]: {}, [LEDGER]: {} },
      },
      logger: new JsonLogger({ level: 'error' }),
    });
    adapters.push(adapter);
    return adapter;
  }

  function newStateDir(): string {
    return mkdtempSync(path.join(env.workDir, 'adapter-kit-state-'));
  }

  /** This spec's acknowledgements (`status@generation`) and drift reports (`drift@generation`) of a system, in order. */
  function reportsOf(systemId: string): string[] {
    return reports.messages
      .filter((report) => report.data.systemId === systemId && report.data.adapterId === ADAPTER_ID)
      .flatMap((report) => {
        switch (report.type) {
          case 'access.drift-detected':
            return [`drift@${report.generation}`];
          case 'access.acknowledged':
            return [`${report.data.status}@${report.generation}`];
          case 'adapter.security-alert':
            return [];
        }
      });
  }

  function alertsOf(systemId: string): string[] {
    return reports.messages.flatMap((report) =>
      report.type === 'adapter.security-alert' && report.data.systemId === systemId && report.data.adapterId === ADAPTER_ID
        ? [report.data.reason]
        : [],
    );
  }

  /** A decision for this spec's adapter. */
  function systemAccessChanged(spec: DecisionSpec): SystemAccessChangedV1 {
    return decisionFor({ adapterId: ADAPTER_ID, ...spec });
  }

  beforeAll(async () => {
    await Promise.all([reports.start(), heartbeats.start()]);
  });

  afterAll(async () => {
    await Promise.all(adapters.map((adapter) => adapter.stop()));
    await Promise.all([reports.stop(), heartbeats.stop(), producer.disconnect()]);
  });

  it('catches up with decisions published while it was down, acknowledges them and reports heartbeats', async () => {
    await publish(
      systemAccessChanged({ systemId: STOCK, generation: 1, state: 'revoked' }),
      systemAccessChanged({ systemId: STOCK, generation: 2, state: 'active' }),
      systemAccessChanged({ systemId: LEDGER, generation: 1, state: 'revoked' }),
    );
    await producer.send([{ topic: Topics.systemAccess, key: LEDGER, partitionKey: ADAPTER_ID, value: 'not a decision' }]);
    const enforcer = new FakeAccessEnforcer();

    const adapter = await start(enforcer, newStateDir());

    await eventually(() => {
      expect(adapter.system(STOCK)).toMatchObject({ converged: true, applied: { generation: 2, state: 'active' } });
      expect(adapter.system(LEDGER)).toMatchObject({ converged: true, applied: { generation: 1, state: 'revoked' } });
    });
    expect(adapter.status().connected).toBe(true);
    await eventually(() => {
      expect(reportsOf(STOCK).at(-1)).toBe('enforced@2');
      // Enforced at once (a fake target): acknowledged once, as `enforced`, with no `delivered` before it.
      expect(reportsOf(LEDGER)).toEqual(['enforced@1']);
      // The record that is not a decision was refused and reported, not skipped silently.
      expect(alertsOf(LEDGER)).toEqual(['unsigned']);
    });
    expect(reportsOf(STOCK)).not.toContain('enforced@1');
    // The history was read to its end before anything was enforced: the revoke on the way to the restore never was.
    expect(enforcer.callsFor(STOCK).map((call) => `${call.action}@${call.generation}`)).toEqual(['restore@2']);
    await eventually(() =>
      expect(heartbeats.messages.filter((beat) => beat.data.adapterId === ADAPTER_ID).at(-1)?.data.systems).toEqual(
        expect.arrayContaining([
          { systemId: STOCK, desiredState: 'active', desiredGeneration: 2, enforcedGeneration: 2 },
          { systemId: LEDGER, desiredState: 'revoked', desiredGeneration: 1, enforcedGeneration: 1 },
        ]),
      ),
    );
    await adapter.stop();
  });

  it('replays the whole topic on every start: with its state lost, it still knows every current decision', async () => {
    const enforcer = new FakeAccessEnforcer();
    const stateDir = newStateDir();

    const adapter = await start(enforcer, stateDir);

    await eventually(() => {
      expect(adapter.system(STOCK)).toMatchObject({ converged: true, desired: { generation: 2 } });
      expect(adapter.system(LEDGER)).toMatchObject({ converged: true, desired: { generation: 1 } });
    });
    expect(enforcer.callsFor(LEDGER).map((call) => `${call.action}@${call.generation}`)).toEqual(['revoke@1']);

    await publish(systemAccessChanged({ systemId: LEDGER, generation: 2, state: 'active' }));
    await eventually(() => expect(adapter.system(LEDGER)).toMatchObject({ converged: true, applied: { generation: 2 } }));
    await adapter.stop();

    // Same state directory: the replayed decisions are all known, so nothing is enforced again.
    const unchanged = new FakeAccessEnforcer();
    const restarted = await start(unchanged, stateDir);
    await publish(systemAccessChanged({ systemId: STOCK, generation: 3, state: 'revoked' }));
    await eventually(() => expect(restarted.system(STOCK)).toMatchObject({ converged: true, applied: { generation: 3 } }));
    expect(unchanged.calls.map((call) => `${call.systemId === STOCK ? 'stock' : 'ledger'}:${call.action}@${call.generation}`)).toEqual([
      'stock:revoke@3',
    ]);
    await restarted.stop();
  });

  it('reports drift on the acknowledgements topic, before the acknowledgement of enforcing again', async () => {
    const enforcer = new FakeAccessEnforcer();
    const adapter = await start(enforcer, newStateDir());
    await eventually(() => expect(adapter.system(STOCK)).toMatchObject({ converged: true, applied: { generation: 3, state: 'revoked' } }));
    enforcer.targets.set(STOCK, 'active'); // access came back out of band

    await adapter.verifyNow(STOCK);

    await eventually(() => expect(reportsOf(STOCK).slice(-2)).toEqual(['drift@3', 'enforced@3']));
    expect(reports.messages.find((report) => report.type === 'access.drift-detected' && report.data.systemId === STOCK)).toMatchObject({
      producer: `adapter-fake/${ADAPTER_ID}`,
      data: { systemId: STOCK, desiredState: 'revoked', observedState: 'active', detail: 'fake target is active' },
    });
    await adapter.stop();
  });

  it("reads only its route's partition; a second instance gets nothing while the first runs, and takes over when it leaves", async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [{ partitions }] = (await admin.fetchTopicMetadata({ topics: [Topics.systemAccess] })).topics;
      const route = partitionForRoute(ADAPTER_ID, partitions.length);
      const other = (route + 1) % partitions.length;
      // A genuine, signed decision for one of its systems, but in a partition the adapter is not routed to:
      // the policy service never writes there, and the adapter does not read it.
      await producer.send([
        {
          topic: Topics.systemAccess,
          key: LEDGER,
          partition: other,
          value: encodeSignedMessage(SystemAccessChangedV1Schema, systemAccessChanged({ systemId: LEDGER, generation: 7, state: 'revoked' }), testPolicySigningKey),
        },
      ]);
      const [firstEnforcer, secondEnforcer] = [new FakeAccessEnforcer(), new FakeAccessEnforcer()];
      const first = await start(firstEnforcer, newStateDir());
      await eventually(() => expect(first.system(LEDGER)?.desired).toBeDefined()); // caught up with its route
      const second = await start(secondEnforcer, newStateDir());
      const group = await eventually(async () => {
        const { groups } = await admin.describeGroups([`portcullis-adapter.${ADAPTER_ID}`]);
        expect(groups[0]).toMatchObject({ state: 'Stable', protocol: 'PortcullisSingleRoute' });
        expect(groups[0].members).toHaveLength(2);
        return groups[0];
      });
      const assignments = group.members.map((member) => AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment);
      expect(assignments).toEqual(expect.arrayContaining([{ [Topics.systemAccess]: [route] }, {}]));
      await publish(systemAccessChanged({ systemId: LEDGER, generation: 8, state: 'active' }));

      // The first instance, running longest, kept the route: it took 8 and never saw the 7 in the other
      // partition. The second got nothing.
      await eventually(() => expect(first.system(LEDGER)).toMatchObject({ converged: true, applied: { generation: 8 } }));
      expect(firstEnforcer.callsFor(LEDGER).map((call) => call.generation)).not.toContain(7);
      expect(second.system(LEDGER)?.desired).toBeUndefined();
      expect(secondEnforcer.calls).toEqual([]);
      await first.stop();
      // The second takes the route over and catches up from its beginning.
      await eventually(() => expect(second.system(LEDGER)).toMatchObject({ converged: true, applied: { generation: 8 } }), 30_000);
      expect(secondEnforcer.callsFor(LEDGER).map((call) => call.generation)).not.toContain(7);
      await second.stop();
    } finally {
      await admin.disconnect();
    }
  });
});
