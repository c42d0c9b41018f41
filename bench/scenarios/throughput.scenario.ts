import type { BenchOptions } from '../lib/bench-options';
import type { BenchStack } from '../lib/bench-stack';
import { outboxMark, timings, type ObservedCommand } from '../lib/command-tracker';
import { noopInstances, pad, register, sleep, startFleet, stopFleet } from '../lib/fleet';
import { CpuAccount } from '../lib/proc-stats';
import type { ScenarioResult } from '../lib/report';
import { round, summarize, wallClockMs } from '../lib/stats';
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
export async function runThroughputScenario(stack: BenchStack, options: BenchOptions): Promise<ScenarioResult> {
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
    const free = groups.map((group) => group.id);
    let freed: (() => void) | undefined;
    const loaded: ObservedCommand[] = [];
    const failures: string[] = [];
    const inFlight = new Set<Promise<void>>();
    const loadCpu = stack.cpuMeter();
    loadCpu.start();
    const started = wallClockMs();
    const endsAt = started + durationS * 1000;
    let issued = 0;
    let stalledMs = 0;
    while (wallClockMs() < endsAt) {
      const due = Math.min(Math.floor(((wallClockMs() - started) * ratePerS) / 1000) + 1, durationS * ratePerS);
      while (issued < due) {
        if (free.length === 0) {
          const stallStart = wallClockMs();
          await new Promise<void>((resolve) => (freed = resolve));
          stalledMs += wallClockMs() - stallStart;
          if (wallClockMs() >= endsAt) break;
          continue;
        }
        const groupId = free.shift()!;
        issued += 1;
        const command = decide(groupId).then(
          (observed) => {
            loaded.push(observed);
            free.push(groupId);
            freed?.();
          },
          (error: unknown) => {
            failures.push((error as Error).message);
            free.push(groupId);
            freed?.();
          },
        );
        inFlight.add(command);
        void command.finally(() => inFlight.delete(command));
      }
      await sleep(Math.max(1, 1000 / ratePerS / 2));
    }
    const windowEnd = wallClockMs();
    log(`  issued ${issued} commands in ${durationS} s; waiting for ${inFlight.size} in flight ...`);
    await Promise.all([...inFlight]);
    const loadCpuMs = loadCpu.stop();
    await stack.profileCheckpoint('throughput-load');
    if (failures.length) throw new Error(`${failures.length} commands failed under load, e.g. ${failures[0]}`);
    const timed = await timings(stack.db, loaded, mark);
    const loadedSummary = summarize(timed.map((timing) => timing.tteMs));
    const completedInWindow = loaded.filter((command) => command.observedAt <= windowEnd).length;
    const windowS = (windowEnd - started) / 1000;
    return {
      name: 'throughput',
      ...loadedSummary,
      commands_per_s: round(completedInWindow / windowS),
      p99_ms_loaded: loadedSummary.p99_ms,
      p99_ms_idle: idleSummary.p99_ms,
      offered_per_s: ratePerS,
      issued,
      not_issued: durationS * ratePerS - issued,
      generator_stalled_ms: Math.round(stalledMs),
      completed: loaded.length,
      // Each restore is two HTTP calls (request, approval by a second lead), both inside the load.
      http_requests: loaded.length + loaded.filter((command) => command.action === 'restore').length,
      idle: idleSummary,
      groups: groupCount,
      systems_per_group: systemsPerGroup,
      adapters,
      cpu_ms_per_command_idle: idleCpu.perOperation(),
      cpu_ms_per_command_loaded: perCommand(loadCpuMs, loaded.length),
      by_action: byAction(timed),
      idle_by_action: byAction(idleTimed),
      hops_p50_ms: hopSummary(timed),
      cross_check: crossCheck(timed),
    };
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
