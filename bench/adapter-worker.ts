/**
 * One adapter worker process of the benchmark: hosts several adapter instances (the real adapter kit,
 * each with its own Kafka clients, consumer group and state directory) and, for the raw Kafka baseline,
 * several plain kafkajs consumers. Driven by bench/run-bench.ts over the IPC channel; exits when the
 * orchestrator goes away.
 *
 *   node --import tsx bench/adapter-worker.ts     (forked by bench/lib/adapter-workers.ts)
 */
import { startAdapter, type RunningAdapter } from '@portcullis/adapter-kit';
import { singleRouteAssigner } from '@portcullis/kafka';
import { Kafka, logLevel, type Consumer, type Producer } from 'kafkajs';
import { PostgresRoleEnforcer } from '../apps/adapter-postgres/src/postgres-role.enforcer';
import { PostgresSystemConfigSchema } from '../apps/adapter-postgres/src/postgres-system.config';
import { NoopAccessEnforcer, NoopSystemConfigSchema } from './lib/noop-access.enforcer';
import {
  kafkajsSsl,
  type AdapterInstanceSpec,
  type StartAdaptersParams,
  type StartBaselineParams,
  type WorkerRequest,
  type WorkerResponse,
  type WorkerUsage,
} from './lib/worker-protocol';

const adapters: RunningAdapter[] = [];
const baseline: { consumer: Consumer; producer: Producer }[] = [];

function startInstance(spec: AdapterInstanceSpec, params: StartAdaptersParams): Promise<RunningAdapter> {
  const common = {
    adapterId: spec.adapterId,
    stateDir: spec.stateDir,
    heartbeatIntervalMs: params.heartbeatIntervalMs,
    verifyIntervalMs: params.verifyIntervalMs,
    kafka: { ...params.kafka, clientId: spec.adapterId },
    signingKey: spec.signingKey,
    trustedKeys: params.trustedKeys,
  };
  if (spec.enforcer === 'postgres') {
    return startAdapter({
      enforcer: new PostgresRoleEnforcer(),
      systemConfigSchema: PostgresSystemConfigSchema,
      config: { ...common, systems: spec.systems as Record<string, { url: string }> },
    });
  }
  return startAdapter({
    enforcer: new NoopAccessEnforcer(),
    systemConfigSchema: NoopSystemConfigSchema,
    config: { ...common, systems: spec.systems as Record<string, Record<string, never>> },
  });
}

async function startAdapters(params: StartAdaptersParams): Promise<number> {
  const started = await Promise.all(params.instances.map((spec) => startInstance(spec, params)));
  adapters.push(...started);
  return started.length;
}

async function stopAdapters(): Promise<void> {
  await Promise.all(adapters.splice(0).map((adapter) => adapter.stop()));
}

/** Raw kafkajs: each consumer (own group) answers every request with one reply, nothing else. */
async function startBaseline(params: StartBaselineParams): Promise<number> {
  await Promise.all(
    params.consumerIds.map(async (consumerId) => {
      const kafka = new Kafka({
        clientId: `bench-baseline-${consumerId}`,
        brokers: params.kafka.brokers,
        sasl: params.kafka.sasl,
        ssl: kafkajsSsl(params.kafka),
        logLevel: logLevel.ERROR,
      });
      const producer = kafka.producer();
      const consumer = kafka.consumer({
        groupId: `${params.groupPrefix}.${consumerId}`,
        maxWaitTimeInMs: 1_000,
        // Routed (the scale baseline): only the partition of this consumer's id, as an adapter reads only its route.
        ...(params.routed ? { partitionAssigners: [singleRouteAssigner(consumerId)] } : {}),
      });
      baseline.push({ consumer, producer });
      await producer.connect();
      await consumer.connect();
      await consumer.subscribe({ topic: params.requestTopic, fromBeginning: false });
      const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
      // No offset commits (as the adapters): kafkajs' default commits after every batch, which on Kafka 4
      // waits for the group coordinator (group.coordinator.append.linger.ms = 5) — not part of the floor.
      type Request = { sampleId: string; item?: string };
      const reply = ({ sampleId, item }: Request) => ({ key: consumerId, value: JSON.stringify({ sampleId, consumerId, item, at: new Date().toISOString() }) });
      const requestOf = (value: Buffer | null) => JSON.parse(value?.toString('utf8') ?? '{}') as Request;
      // A routed partition holds other consumers' requests too (keyed by the consumer they are for): skip those.
      const mine = (key: Buffer | null) => !params.routed || key?.toString('utf8') === consumerId;
      await consumer.run(
        params.batchReplies
          ? {
              // Under load: all of a fetched batch's replies in one produce request, as a raw client would.
              autoCommit: false,
              eachBatch: async ({ batch }) => {
                const replies = batch.messages.filter((message) => mine(message.key)).map((message) => reply(requestOf(message.value)));
                if (replies.length > 0) await producer.send({ topic: params.replyTopic, acks: -1, messages: replies });
              },
            }
          : {
              autoCommit: false,
              eachMessage: async ({ message }) => {
                if (mine(message.key)) await producer.send({ topic: params.replyTopic, acks: -1, messages: [reply(requestOf(message.value))] });
              },
            },
      );
      await joined;
    }),
  );
  return params.consumerIds.length;
}

async function stopBaseline(): Promise<void> {
  await Promise.all(
    baseline.splice(0).map(async ({ consumer, producer }) => {
      await consumer.disconnect();
      await producer.disconnect();
    }),
  );
}

function usage(): WorkerUsage {
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  return { pid: process.pid, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, cpuUserMicros: cpu.user, cpuSystemMicros: cpu.system };
}

async function handle(request: WorkerRequest): Promise<unknown> {
  switch (request.method) {
    case 'startAdapters':
      return startAdapters(request.params);
    case 'stopAdapters':
      return stopAdapters();
    case 'startBaseline':
      return startBaseline(request.params);
    case 'stopBaseline':
      return stopBaseline();
    case 'usage':
      return usage();
    case 'shutdown':
      await Promise.allSettled([stopAdapters(), stopBaseline()]);
      setImmediate(() => process.exit(0));
      return null;
  }
}

process.on('message', (request: WorkerRequest) => {
  handle(request).then(
    (result) => process.send?.({ id: request.id, ok: true, result } satisfies WorkerResponse),
    (error: unknown) =>
      process.send?.({ id: request.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies WorkerResponse),
  );
});
// The orchestrator is gone (finished, Ctrl-C or killed): never outlive it.
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true, pid: process.pid });
