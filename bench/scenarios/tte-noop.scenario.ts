import type { BenchOptions } from '../lib/bench-options';
import type { BenchStack } from '../lib/bench-stack';
import { outboxMark, timings, type CommandTiming, type ObservedCommand } from '../lib/command-tracker';
import { noopInstances, register, sleep, startFleet, stopFleet } from '../lib/fleet';
import { startFloor } from '../lib/kafka-baseline';
import type { ScenarioResult } from '../lib/report';
import { round, summarize } from '../lib/stats';
import { CpuAccount } from '../lib/proc-stats';
import { byAction, crossCheck, hopSummary, slowestSamples } from './timing-summary';

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

/**
 * tte-noop-N and baseline-kafka-N, interleaved sample by sample on the same broker and the same worker
 * processes, so that both see the same machine (other load drifts over minutes; it hits both alike).
 *
 * - tte-noop-N: N no-op adapter instances (real adapter kit), each serving its own system, one group with
 *   all N systems. A sample is one revoke or restore (alternating): client request sent → the policy
 *   service has recorded the last `enforced` acknowledgement (its own received_at). A restore is four eyes:
 *   a lead's request, then a second lead's approval; its sample starts at the approval (`by_action` has
 *   revokes and restores apart, and the restore request's own time).
 * - baseline-kafka-N: raw kafkajs. A sample: a producer sends one message, N consumers in N consumer groups
 *   each receive it and produce a reply, one consumer receives all N replies.
 */
export async function runTteScenarios(stack: BenchStack, options: BenchOptions): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const adapters of options.tte.adapters) {
    results.push(...(await runOne(stack, options, adapters)));
  }
  return results;
}

async function runOne(stack: BenchStack, options: BenchOptions, n: number): Promise<ScenarioResult[]> {
  const { samples, warmup, gapMs } = options.tte;
  const prefix = `tte${n}`;
  const systems = Array.from({ length: n }, (_, index) => `${prefix}-s${index + 1}`);
  const groupId = `${prefix}-all`;
  log(`tte-noop-${n} / baseline-kafka-${n}: registering ${n} systems, starting ${n} adapter instances ...`);
  const instances = noopInstances(stack, prefix, n, (index) => [systems[index]]);
  await register(stack, instances, 'noop', [{ id: groupId, systemIds: systems }]);
  const fleet = await startFleet(stack, options, prefix, instances);

  // The baseline's consumers live in the same worker processes, spread the same way as the adapters.
  const consumerIds = Array.from({ length: n }, (_, index) => `n${n}-c${index + 1}`);
  const floor = await startFloor(stack, options, fleet, { name: `n${n}`, consumerIds });
  const centre = floor.centre;
  log(`  adapters ready after ${(fleet.startMs / 1000).toFixed(1)} s (start + replay of the desired-state topic); warming up ...`);

  const tracker = stack.tracker(options.pollMs);
  let action: 'revoke' | 'restore' = 'revoke';
  const decideOnce = async (): Promise<ObservedCommand> => {
    const sent = await stack.client.decide(action, groupId);
    action = action === 'revoke' ? 'restore' : 'revoke';
    return tracker.waitFor(sent);
  };
  try {
    await centre.warmUp(n);
    for (let index = 0; index < warmup * 2; index++) await decideOnce();
    for (let index = 0; index < warmup; index++) await centre.round(n);

    await stack.profileCheckpoint(`setup-tte-noop-${n}`);
    const mark = await outboxMark(stack.db);
    const baseline: number[] = [];
    const observed: ObservedCommand[] = [];
    const jitter = () => sleep(gapMs + Math.random() * gapMs);
    const baselineCpu = new CpuAccount(stack.cpuMeter());
    const tteCpu = new CpuAccount(stack.cpuMeter());
    for (let index = 0; index < samples; index++) {
      baseline.push(await baselineCpu.measure(() => centre.round(n)));
      await jitter();
      observed.push(await tteCpu.measure(() => decideOnce()));
      await jitter();
      if ((index + 1) % 50 === 0) log(`  ${index + 1}/${samples} samples`);
    }
    await stack.profileCheckpoint(`tte-noop-${n}`);
    const timed: CommandTiming[] = await timings(stack.db, observed, mark);
    if (timed.some((timing) => timing.systems !== n)) throw new Error(`a tte-noop-${n} command was not enforced on all ${n} systems`);
    const base = { name: `baseline-kafka-${n}`, adapters: n, ...summarize(baseline), cpu_ms_per_round: baselineCpu.perOperation() };
    const tte = summarize(timed.map((timing) => timing.tteMs));
    return [
      base,
      {
        name: `tte-noop-${n}`,
        adapters: n,
        ...tte,
        baseline_p99_ms: base.p99_ms,
        ratio_p99: round(tte.p99_ms / base.p99_ms, 2),
        service_p50_ms: summarize(timed.map((timing) => timing.serviceMs)).p50_ms,
        client_observed_p50_ms: summarize(timed.map((timing) => timing.clientObservedMs)).p50_ms,
        by_action: byAction(timed),
        hops_p50_ms: hopSummary(timed),
        slowest_samples: slowestSamples(timed),
        cross_check: crossCheck(timed),
        cpu_ms_per_command: tteCpu.perOperation(),
        adapter_start_ms: fleet.startMs,
        worker_processes: fleet.workers.length,
      },
    ];
  } finally {
    tracker.stop();
    await floor.stop();
    await stopFleet(stack, fleet);
  }
}
