import { join } from 'node:path';
import { generateSigningKeyPair, parsePrivateKey, publicKeyPem } from '../../libs/contracts/src/signing';
import type { AdapterWorker } from './adapter-workers';
import { chunk } from './adapter-workers';
import type { BenchOptions } from './bench-options';
import type { BenchStack } from './bench-stack';
import { forEachLimited } from './policy-client';
import { waitUntilQuiet } from './proc-stats';
import type { AdapterInstanceSpec } from './worker-protocol';

export interface Fleet {
  workers: AdapterWorker[];
  instances: AdapterInstanceSpec[];
  /** Start of the adapters until their workers were quiet (the desired-state topic replayed). */
  startMs: number;
}

/**
 * One adapter instance with its own Ed25519 key pair, made for this run (key id `<adapterId>-bench`); its
 * public half is registered by `register` before the instance starts.
 */
export function adapterInstance(
  stack: BenchStack,
  adapterId: string,
  enforcer: AdapterInstanceSpec['enforcer'],
  systems: AdapterInstanceSpec['systems'],
): AdapterInstanceSpec {
  return {
    adapterId,
    stateDir: join(stack.workDir, 'adapter-state', adapterId),
    enforcer,
    systems,
    signingKey: { keyId: `${adapterId}-bench`, privateKey: generateSigningKeyPair().privateKeyPem },
  };
}

/** No-op adapter instances `<prefix>-a<i>`, instance i serving `systemsOf(i)`. */
export function noopInstances(stack: BenchStack, prefix: string, count: number, systemsOf: (index: number) => string[]): AdapterInstanceSpec[] {
  return Array.from({ length: count }, (_, index) =>
    adapterInstance(stack, `${prefix}-a${index + 1}`, 'noop', Object.fromEntries(systemsOf(index).map((systemId) => [systemId, {}]))),
  );
}

/**
 * Starts the instances in worker processes (`instancesPerWorker` each) and waits until every worker is
 * quiet: each instance replays the whole compacted desired-state topic at start, which is real work
 * that must not be counted in the first measurements.
 */
export async function startFleet(stack: BenchStack, options: BenchOptions, name: string, instances: AdapterInstanceSpec[]): Promise<Fleet> {
  const started = Date.now();
  const groups = chunk(instances, options.instancesPerWorker);
  const workers = await stack.startWorkers(name, groups.length, options.instancesPerWorker);
  await Promise.all(
    workers.map((worker, index) =>
      worker.startAdapters({
        kafka: stack.kafkaAs('adapter'),
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        verifyIntervalMs: options.verifyIntervalMs,
        trustedKeys: stack.trustedPolicyKeys,
        instances: groups[index],
      }),
    ),
  );
  await waitUntilQuiet(() => workers.map((worker) => worker.pid));
  return { workers, instances, startMs: Date.now() - started };
}

export async function stopFleet(stack: BenchStack, fleet: Fleet): Promise<void> {
  await stack.stopWorkers(fleet.workers);
}

/**
 * Registers through the API, as an administrator would: each instance's public key for its adapter id,
 * every system it serves (of one kind) with that adapter id, then the groups.
 */
export async function register(
  stack: BenchStack,
  instances: readonly AdapterInstanceSpec[],
  kind: string,
  groups: { id: string; systemIds: string[] }[],
  concurrency = 8,
): Promise<void> {
  await forEachLimited(instances, concurrency, (instance) =>
    stack.client.registerAdapterKey(instance.adapterId, instance.signingKey.keyId, publicKeyPem(parsePrivateKey(instance.signingKey.privateKey))),
  );
  const systems = instances.flatMap((instance) => Object.keys(instance.systems).map((id) => ({ id, adapterId: instance.adapterId })));
  await forEachLimited(systems, concurrency, (system) => stack.client.registerSystem(system.id, kind, system.adapterId));
  await forEachLimited(groups, concurrency, (group) => stack.client.createGroup(group.id, group.systemIds));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}
