import type { BenchOptions } from '../lib/bench-options';
import type { BenchStack } from '../lib/bench-stack';
import { outboxMark, timings, type ObservedCommand } from '../lib/command-tracker';
import { noopInstances, pad, register, startFleet, stopFleet, type Fleet } from '../lib/fleet';
import { floorCpu, runFloor, startFloor } from '../lib/kafka-baseline';
import { memoryOf, MemorySampler, postmasterPid, processTree, pssMbOf } from '../lib/proc-stats';
import type { ScenarioResult } from '../lib/report';
import { round, summarize, wallClockMs } from '../lib/stats';
import { join } from 'node:path';

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

/**
 * scale: `systems` systems in `groups` groups (consecutive systems per group), served by `adapters`
 * no-op adapter instances (system k by adapter k mod adapters). A security lead revokes every group in
 * one bulk revoke (`POST /groups/revoke`: one request, one transaction). Measured: request sent → the last `enforced`
 * acknowledgement of the last group recorded by the service; and the peak memory of every process.
 */
export async function runScaleScenario(stack: BenchStack, options: BenchOptions): Promise<ScenarioResult[]> {
  const { systems: systemCount, groups: groupCount, adapters } = options.scale;
  const perGroup = Math.ceil(systemCount / groupCount);
  const systems = Array.from({ length: systemCount }, (_, index) => `sc-s${pad(index + 1, 5)}`);
  const groups = Array.from({ length: groupCount }, (_, g) => ({ id: `sc-g${pad(g + 1, 4)}`, systemIds: systems.slice(g * perGroup, (g + 1) * perGroup) }));
  // One probe system per adapter: a revoke of the probe group shows every instance consumes before the measurement.
  const probes = Array.from({ length: adapters }, (_, index) => `sc-probe-a${index + 1}`);
  const instances = noopInstances(stack, 'sc', adapters, (a) => [...systems.filter((_, k) => k % adapters === a), probes[a]]);
  log(`scale: registering ${adapters} adapter keys, ${systemCount} systems and ${groupCount} groups through the API ...`);
  const registerStarted = Date.now();
  await register(stack, instances, 'noop', [...groups, { id: 'sc-probe', systemIds: probes }], 16);
  log(`  registered in ${((Date.now() - registerStarted) / 1000).toFixed(1)} s; starting ${adapters} adapter instances ...`);
  const fleet = await startFleet(stack, options, 'sc', instances);
  // 1,000 commands in flight: poll 4 times a second (the figures come from the service's timestamps anyway).
  const tracker = stack.tracker(250, 900_000);
  try {
    log(`  adapters ready after ${(fleet.startMs / 1000).toFixed(1)} s (start + replay); probing every instance ...`);
    await tracker.waitFor(await stack.client.decide('revoke', 'sc-probe'));
    await tracker.waitFor(await stack.client.decide('restore', 'sc-probe'));

    const policyDbPid = postmasterPid(join(stack.workDir, 'policy'));
    const sampler = new MemorySampler(() => [
      { name: 'policy_service', mb: memoryOf(stack.policyService.pid!).rssMb },
      { name: 'kafka_broker', mb: memoryOf(stack.broker.pid() ?? 0).rssMb },
      { name: 'postgres_policy_db_pss', mb: policyDbPid ? processTree(policyDbPid).reduce((sum, pid) => sum + pssMbOf(pid), 0) : 0 },
      { name: 'bench_client', mb: memoryOf(process.pid).rssMb },
      ...fleet.workers.map((worker) => ({ name: worker.name, mb: memoryOf(worker.pid).rssMb })),
    ]);
    log(`  revoking all ${groupCount} groups in one bulk revoke (POST /groups/revoke) ...`);
    await stack.profileCheckpoint('setup-scale');
    const mark = await outboxMark(stack.db);
    sampler.start();
    const cpu = stack.cpuMeter();
    cpu.start();
    const firstSentAt = wallClockMs();
    // One decision for every group: what a security lead does when the whole estate is in scope.
    const waits = (await stack.client.revokeMany(groups.map((group) => group.id))).map((sent) => tracker.waitFor(sent));
    const requestsDoneMs = wallClockMs() - firstSentAt;
    log(`  all ${groupCount} revokes accepted after ${Math.round(requestsDoneMs)} ms; waiting for enforcement ...`);
    const observed = await Promise.all(waits);
    const peaks = sampler.stop();
    const cpuMs = cpu.stop();
    await stack.profileCheckpoint('scale');
    const timed = await timings(stack.db, observed, mark);
    const enforcedSystems = timed.reduce((sum, timing) => sum + timing.systems, 0);
    if (enforcedSystems !== systemCount) throw new Error(`only ${enforcedSystems} of ${systemCount} systems were enforced`);
    const globalRevokeMs = Math.max(...timed.map((timing) => timing.lastEnforcedAt)) - firstSentAt;
    const clientObservedMs = Math.max(...observed.map((command) => command.observedAt)) - firstSentAt;
    const workerPeaks = fleet.workers.map((worker) => peaks.get(worker.name) ?? 0);
    const perProcess = Object.fromEntries([...peaks].map(([name, mb]) => [name, round(mb)]));
    const baseline = await runFloor('baseline-kafka-scale', stack, fleet, () =>
      runKafkaScaleBaseline(stack, options, fleet, instances.map((instance) => instance.adapterId)),
    );
    const scale: ScenarioResult = {
      name: 'scale',
      ...summarize(timed.map((timing) => timing.tteMs)),
      systems: systemCount,
      groups: groupCount,
      adapters,
      global_revoke_ms: Math.round(globalRevokeMs),
      global_revoke_client_observed_ms: Math.round(clientObservedMs),
      requests_accepted_ms: Math.round(requestsDoneMs),
      peak_rss_mb: {
        policy_service: round(peaks.get('policy_service') ?? 0),
        adapter_worker_max: round(Math.max(...workerPeaks)),
        adapter_instances_per_worker: options.instancesPerWorker,
        adapter_instance_estimate: round(Math.max(...workerPeaks) / options.instancesPerWorker),
        kafka_broker: round(peaks.get('kafka_broker') ?? 0),
        postgres_policy_db_pss: round(peaks.get('postgres_policy_db_pss') ?? 0),
        bench_client: round(peaks.get('bench_client') ?? 0),
      },
      peak_rss_mb_per_process: perProcess,
      cpu_ms: cpuMs,
      adapter_start_ms: fleet.startMs,
      ...('error' in baseline
        ? { baseline_error: baseline.error }
        : { baseline_global_revoke_ms: baseline.p50_ms, ratio_global_revoke: round(globalRevokeMs / baseline.p50_ms, 2) }),
    };
    return 'error' in baseline ? [scale] : [baseline, scale];
  } finally {
    tracker.stop();
    await stopFleet(stack, fleet);
  }
}

/**
 * baseline-kafka-scale: the global revoke's message pattern on raw kafkajs, right after it, on the same
 * broker and in the same worker processes, once their adapter instances have stopped (`runFloor`). One
 * request per system, keyed with and routed to the partition of the adapter that serves it (the consumers
 * take the adapters' ids, so they share partitions exactly as the adapters do), sent in batches of 1,000
 * as fast as kafkajs takes them; each consumer reads only its route's partition, skips the other
 * consumers' requests and answers a batch with one produce request; done when the centre has every reply.
 * No HTTP, database, signatures or durable state.
 */
async function runKafkaScaleBaseline(stack: BenchStack, options: BenchOptions, fleet: Fleet, consumerIds: string[]): Promise<ScenarioResult> {
  const { systems } = options.scale;
  const adapters = consumerIds.length;
  log(`  baseline-kafka-scale: ${systems} requests to ${adapters} raw kafkajs consumers ...`);
  const { centre, stop } = await startFloor(stack, options, fleet, { name: 'scale', consumerIds, batchReplies: true, routed: true });
  try {
    await centre.warmUpBulk(consumerIds, stack.partitions);
    const items = Array.from({ length: systems }, (_, k) => ({ item: `s${k + 1}`, consumer: consumerIds[k % adapters] }));
    const cpu = stack.cpuMeter();
    cpu.start();
    const ms = await centre.bulkRound(items, stack.partitions);
    const cpuMs = cpu.stop();
    return { name: 'baseline-kafka-scale', ...summarize([ms]), systems, consumers: adapters, cpu_ms: floorCpu(cpuMs) };
  } finally {
    await stop();
  }
}
