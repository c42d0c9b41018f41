/** What a run does; `--quick` shrinks every scenario so the whole run takes about two minutes. */
export interface BenchOptions {
  mode: 'full' | 'quick';
  scenarios: ScenarioName[];
  /** Adapter instances per worker process. */
  instancesPerWorker: number;
  /** Partitions of every Portcullis topic (and of the raw-Kafka baseline's topics). */
  partitions: number;
  /** Long enough that heartbeats do not skew the figures; the policy service still records one per start. */
  heartbeatIntervalMs: number;
  /** Verification of revoked systems (drift checks); long, so it does not run during a measurement. */
  verifyIntervalMs: number;
  /** How often the client polls the policy database for completed commands (tte, postgres; scale polls every 250 ms, throughput every 50 ms). */
  pollMs: number;
  tte: { adapters: number[]; samples: number; warmup: number; gapMs: number };
  postgres: { roles: number; sessions: number; samples: number };
  throughput: { durationS: number; ratePerS: number; groups: number; systemsPerGroup: number; adapters: number; idleSamples: number };
  scale: { systems: number; groups: number; adapters: number };
}

export const SCENARIOS = ['tte', 'postgres', 'scale', 'throughput'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export function benchOptions(quick: boolean): BenchOptions {
  const common = {
    scenarios: [...SCENARIOS],
    instancesPerWorker: 10,
    partitions: 6,
    heartbeatIntervalMs: 600_000,
    verifyIntervalMs: 600_000,
    pollMs: 10,
  };
  if (quick) {
    return {
      ...common,
      mode: 'quick',
      tte: { adapters: [1, 10, 50], samples: 20, warmup: 2, gapMs: 40 },
      postgres: { roles: 1_000, sessions: 10, samples: 3 },
      throughput: { durationS: 15, ratePerS: 200, groups: 100, systemsPerGroup: 10, adapters: 10, idleSamples: 10 },
      scale: { systems: 1_000, groups: 100, adapters: 10 },
    };
  }
  return {
    ...common,
    mode: 'full',
    tte: { adapters: [1, 10, 50], samples: 200, warmup: 5, gapMs: 50 },
    postgres: { roles: 1_000, sessions: 10, samples: 15 },
    throughput: { durationS: 60, ratePerS: 200, groups: 200, systemsPerGroup: 10, adapters: 10, idleSamples: 50 },
    scale: { systems: 10_000, groups: 1_000, adapters: 50 },
  };
}
