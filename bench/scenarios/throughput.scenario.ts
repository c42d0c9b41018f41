import type { BenchOptions } from '../lib/bench-options';
import { outboxMark, timings, type ObservedCommand } from '../lib/command-tracker';
import type { BenchStack } from '../lib/bench-stack';
import { noopInstances, pad, register, sleep, startFleet, stopFleet, type Fleet } from '../lib/fleet';
import { floorCpu, runFloor, startFloor } from '../lib/kafka-baseline';
import { CpuAccount } from '../lib/proc-stats';
import type { ScenarioResult } from '../lib/report';
import { loadFigures, openLoopLoad } from '../lib/open-loop';
import { round, summarize } from '../lib/stats';
import { byAction, crossCheck, hopSummary } from './timing-summary';

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

/**
 * throughput: groups of 10 systems, system j of every group served by adapter j (so every command fans out
 * to all 10 adapters). First the idle figure: single commands one after the other. Then an open-loop load
 * at `ratePerS` for `durationS`: every 1/rate a revoke or restore of a group that has no command in
 * flight (a group's next command would otherwise supersede the previous one, which then never completes).
 * If every group is busy the generator waits for one and the shortfall is reported as `not_issued`.
 * A command is completed when every system of it is `enforced`. A restore is the production path of four
 * eyes: one lead's request, then a second lead's approval (two HTTP calls, both in the load); its time to
 * enforce runs from the approval, which is where the service decides (`by_action` has the rest).
 */
export async function runThroughputScenario(stack: BenchStack, options: BenchOptions): Promise<ScenarioResult[]> {
  const { durationS, ratePerS, groups: groupCount, systemsPerGroup, adapters, idleSamples } = options.throughput;
  const groups = Array.from({ length: groupCount }, (_, g) => ({
    id: `tp-g${pad(g + 1, 4)}`,
    systemIds: Array.from({ length: systemsPerGroup }, (_, s) => `tp-g${pad(g + 1, 4)}-s${pad(s + 1, 2)}`),
  }));
  log(`throughput: registering ${groupCount * systemsPerGroup} systems in ${groupCount} groups, starting ${adapters} adapters ...`);
  const instances = noopInstances(stack, 'tp', adapters, (a) => groups.flatMap((group) => group.systemIds.filter((_, s) => s % adapters === a)));
  await register(stack, instances, 'noop', groups, 16);
  const fleet = await startFleet(stack, options, 'tp', instances);
  // Up to `groups` commands in flight: poll every 50 ms (the figures come from the service's timestamps).
  const tracker = stack.tracker(50);
  const state = new Map(groups.map((group) => [group.id, 'active' as 'active' | 'revoked']));
  const decide = async (groupId: string): Promise<ObservedCommand> => {
    const action = state.get(groupId) === 'active' ? 'revoke' : 'restore';
    const observed = await tracker.waitFor(await stack.client.decide(action, groupId));
    state.set(groupId, action === 'revoke' ? 'revoked' : 'active');
    return observed;
  };
  try {
    log(`  adapters ready after ${(fleet.startMs / 1000).toFixed(1)} s; idle: ${idleSamples} commands one at a time ...`);
    for (let index = 0; index < 4; index++) await decide(groups[index % groups.length].id);
    await stack.profileCheckpoint('setup-throughput');
    let mark = await outboxMark(stack.db);
    const idle: ObservedCommand[] = [];
    const idleCpu = new CpuAccount(stack.cpuMeter());
    for (let index = 0; index < idleSamples; index++) {
      idle.push(await idleCpu.measure(() => decide(groups[index % groups.length].id)));
      await sleep(options.tte.gapMs);
    }
    await stack.profileCheckpoint('throughput-idle');
    const idleTimed = await timings(stack.db, idle, mark);
    const idleSummary = summarize(idleTimed.map((timing) => timing.tteMs));

    log(`  load: ${ratePerS} commands/s for ${durationS} s over ${groupCount} groups ...`);
    mark = await outboxMark(stack.db);
    const loadCpu = stack.cpuMeter();
    loadCpu.start();
    const load = await openLoopLoad({
      ratePerS,
      durationS,
      slots: groups.map((group) => group.id),
      run: decide,
      onWindowEnd: (issued, inFlight) => log(`  issued ${issued} commands in ${durationS} s; waiting for ${inFlight} in flight ...`),
    });
    const loadCpuMs = loadCpu.stop();
    await stack.profileCheckpoint('throughput-load');
    if (load.failures.length) throw new Error(`${load.failures.length} commands failed under load, e.g. ${load.failures[0]}`);
    const loaded = load.completed.map((done) => done.value);
    const timed = await timings(stack.db, loaded, mark);
    const loadedSummary = summarize(timed.map((timing) => timing.tteMs));
    const baseline = await runFloor('baseline-kafka-throughput', stack, fleet, () =>
      runKafkaThroughputBaseline(stack, options, fleet, instances.map((instance) => instance.adapterId)),
    );
    const loadedCpu = perCommand(loadCpuMs, loaded.length);
    const throughput: ScenarioResult = {
      name: 'throughput',
      ...loadFigures(load, loadedSummary, idleSummary, ratePerS),
      // Each restore is two HTTP calls (request, approval by a second lead), both inside the load.
      http_requests: loaded.length + loaded.filter((command) => command.action === 'restore').length,
      groups: groupCount,
      systems_per_group: systemsPerGroup,
      adapters,
      cpu_ms_per_command_idle: idleCpu.perOperation(),
      cpu_ms_per_command_loaded: loadedCpu,
      by_action: byAction(timed),
      idle_by_action: byAction(idleTimed),
      hops_p50_ms: hopSummary(timed),
      cross_check: crossCheck(timed),
      ...('error' in baseline
        ? { baseline_error: baseline.error }
        : {
            baseline_commands_per_s: baseline.commands_per_s,
            baseline_p99_ms_loaded: baseline.p99_ms_loaded,
            baseline_p99_ms_idle: baseline.p99_ms_idle,
            ratio_cpu_per_command: round(loadedCpu.total / (baseline.cpu_ms_per_command_loaded as Record<string, number>).total, 1),
          }),
    };
    return 'error' in baseline ? [throughput] : [baseline, throughput];
  } finally {
    tracker.stop();
    await stopFleet(stack, fleet);
  }
}

function perCommand(used: Record<string, number>, commands: number): Record<string, number> {
  const per: Record<string, number> = {};
  let total = 0;
  for (const [kind, ms] of Object.entries(used)) {
    if (ms === 0) continue;
    per[kind] = round(ms / Math.max(1, commands));
    total += ms;
  }
  per.total = round(total / Math.max(1, commands));
  return per;
}

/**
 * baseline-kafka-throughput: the throughput load on raw kafkajs, right after Portcullis' own load, on the
 * same broker and in the same worker process, once its adapter instances have stopped (`runFloor`). A
 * command is one message that one consumer per adapter (one consumer group each) receives and answers;
 * it completes when the centre has all the replies (as baseline-kafka-N, but batched as a raw client
 * would under load: the consumers answer a fetched batch in one produce request, and the centre sends the
 * commands that come while a produce request is under way together in the next). Same offered rate, duration,
 * idle samples and cap of commands in flight as Portcullis. No database, no signatures, no durable state.
 * Both run at the offered rate, which caps both: a floor that keeps up shows that rate, not its capacity;
 * its CPU per command and its p99 loaded against idle are what compare.
 */
async function runKafkaThroughputBaseline(stack: BenchStack, options: BenchOptions, fleet: Fleet, consumerIds: string[]): Promise<ScenarioResult> {
  const { durationS, ratePerS, groups, idleSamples } = options.throughput;
  const adapters = consumerIds.length;
  log(`  baseline-kafka-throughput: ${adapters} raw kafkajs consumers, the same load ...`);
  const { centre, stop } = await startFloor(stack, options, fleet, { name: 'throughput', consumerIds, batchReplies: true, coalesceSends: true });
  try {
    await centre.warmUp(adapters);
    const idle: number[] = [];
    for (let index = 0; index < idleSamples; index++) {
      idle.push(await centre.round(adapters));
      await sleep(options.tte.gapMs);
    }
    const idleSummary = summarize(idle);
    const cpu = stack.cpuMeter();
    cpu.start();
    const load = await openLoopLoad({
      ratePerS,
      durationS,
      slots: Array.from({ length: groups }, (_, index) => `slot-${index}`),
      run: () => centre.round(adapters, 180_000),
    });
    const cpuMs = cpu.stop();
    if (load.failures.length) throw new Error(`${load.failures.length} baseline rounds failed under load, e.g. ${load.failures[0]}`);
    const loadedSummary = summarize(load.completed.map((done) => done.value));
    return {
      name: 'baseline-kafka-throughput',
      ...loadFigures(load, loadedSummary, idleSummary, ratePerS),
      consumers: adapters,
      cpu_ms_per_command_loaded: perCommand(floorCpu(cpuMs), load.completed.length),
    };
  } finally {
    await stop();
  }
}
