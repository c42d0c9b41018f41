import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

/** Resident and peak resident memory of a process, from /proc (0 when it is gone). */
export function memoryOf(pid: number): { rssMb: number; hwmMb: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
  } catch {
    return { rssMb: 0, hwmMb: 0 };
  }
}

/** Proportional set size (shared pages split between sharers): the fair figure for PostgreSQL's processes. */
export function pssMbOf(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a process has used so far, in ms. */
export function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return 0;
  }
}

/** The process and all its descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const result: number[] = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    result.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return result;
}

/** The postmaster's pid of a data directory (first line of postmaster.pid), or undefined. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Waits until every process has used less than `maxCoreFraction` of a core over `windowMs`, twice in a
 * row: adapters replaying the desired-state topic at start are busy, then go quiet. Measures only these
 * processes' own CPU time, so other load on the machine does not matter. Returns how long it waited.
 */
export async function waitUntilQuiet(
  pids: () => number[],
  options: { maxCoreFraction?: number; windowMs?: number; timeoutMs?: number } = {},
): Promise<number> {
  const { maxCoreFraction = 0.1, windowMs = 1_000, timeoutMs = 600_000 } = options;
  const started = Date.now();
  let quietWindows = 0;
  let before = new Map(pids().map((pid) => [pid, cpuMsOf(pid)]));
  while (quietWindows < 2) {
    if (Date.now() - started > timeoutMs) throw new Error(`processes still busy after ${timeoutMs / 1000} s`);
    await new Promise((resolveWait) => setTimeout(resolveWait, windowMs));
    const now = new Map(pids().map((pid) => [pid, cpuMsOf(pid)]));
    const busiest = Math.max(0, ...[...now].map(([pid, cpu]) => (cpu - (before.get(pid) ?? cpu)) / windowMs));
    quietWindows = busiest <= maxCoreFraction ? quietWindows + 1 : 0;
    before = now;
  }
  return Date.now() - started;
}

/** Samples memory of named processes while something runs; keeps the peak RSS per name. */
export class MemorySampler {
  private readonly peaks = new Map<string, number>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly sources: () => { name: string; mb: number }[]) {}

  start(intervalMs = 250): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  stop(): Map<string, number> {
    clearInterval(this.timer);
    this.sample();
    return this.peaks;
  }

  private sample(): void {
    for (const { name, mb } of this.sources()) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, mb));
  }
}

export interface ProcessGroup {
  kind: string;
  pids: () => number[];
}

/**
 * CPU time used by each kind of process between `start` and `stop`. On a 2-core machine the sum per
 * command bounds the throughput: 2,000 ms of CPU per second of wall time, shared by everything.
 * PostgreSQL backends are summed over the server's process tree (they live as long as their pools).
 */
export class CpuMeter {
  private before = new Map<string, Map<number, number>>();

  constructor(private readonly groups: ProcessGroup[]) {}

  start(): void {
    this.before = this.read();
  }

  stop(): Record<string, number> {
    const after = this.read();
    const used: Record<string, number> = {};
    for (const [kind, pids] of after) {
      const earlier = this.before.get(kind) ?? new Map<number, number>();
      used[kind] = Math.round([...pids].reduce((sum, [pid, ms]) => sum + ms - (earlier.get(pid) ?? 0), 0));
    }
    return used;
  }

  private read(): Map<string, Map<number, number>> {
    return new Map(this.groups.map((group) => [group.kind, new Map(group.pids().map((pid) => [pid, cpuMsOf(pid)]))]));
  }
}

/** Adds up the CPU time of several measured stretches (e.g. the samples of an interleaved scenario). */
export class CpuAccount {
  private readonly totals: Record<string, number> = {};
  private count = 0;

  constructor(private readonly meter: CpuMeter) {}

  async measure<T>(work: () => Promise<T>): Promise<T> {
    this.meter.start();
    try {
      return await work();
    } finally {
      for (const [kind, ms] of Object.entries(this.meter.stop())) this.totals[kind] = (this.totals[kind] ?? 0) + ms;
      this.count += 1;
    }
  }

  /** CPU ms per operation, by kind of process, and their sum. */
  perOperation(operations = this.count): Record<string, number> {
    const per: Record<string, number> = {};
    let total = 0;
    for (const [kind, ms] of Object.entries(this.totals)) {
      if (ms === 0) continue;
      per[kind] = Math.round((ms / operations) * 10) / 10;
      total += ms;
    }
    per.total = Math.round((total / operations) * 10) / 10;
    return per;
  }
}
