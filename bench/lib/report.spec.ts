import { scenarioTable, sideBySide, sideBySideTable, targets, type ScenarioResult } from './report';

const summary = (p50: number, p99 = p50) => ({ samples: 1, p50_ms: p50, p95_ms: p99, p99_ms: p99, max_ms: p99 });

const results: ScenarioResult[] = [
  { name: 'baseline-kafka-10', adapters: 10, ...summary(8, 30) },
  { name: 'tte-noop-10', adapters: 10, ...summary(30, 75), baseline_p99_ms: 30, ratio_p99: 2.5 },
  { name: 'postgres-1000', ...summary(1100), portcullis_ms: 1100, direct_ms: 1000, ratio: 1.1 },
  {
    name: 'baseline-kafka-throughput',
    ...summary(70, 420),
    commands_per_s: 199.8,
    p99_ms_loaded: 420,
    p99_ms_idle: 70,
    cpu_ms_per_command_loaded: { broker: 4, total: 8.8 },
  },
  {
    name: 'throughput',
    ...summary(1300, 4900),
    commands_per_s: 87.2,
    offered_per_s: 200,
    p99_ms_loaded: 4900,
    p99_ms_idle: 250,
    cpu_ms_per_command_loaded: { policy_service: 6, total: 19.2 },
    ratio_cpu_per_command: 2.2,
  },
  { name: 'baseline-kafka-scale', ...summary(2678), systems: 10_000, consumers: 50 },
  { name: 'scale', ...summary(13_000, 14_892), systems: 10_000, groups: 1_000, global_revoke_ms: 14_892, baseline_global_revoke_ms: 2678, ratio_global_revoke: 5.56 },
];

describe('sideBySide', () => {
  it('puts every scenario beside its floor from the same run', () => {
    expect(sideBySide(results)).toEqual([
      { scenario: 'tte-noop-10', what: 'p99 time to enforce', portcullis: '75 ms', floor: '30 ms', ratio: '2.5×' },
      { scenario: 'postgres-1000', what: 'revoke (p50)', portcullis: '1100 ms', floor: '1000 ms (direct SQL)', ratio: '1.1×' },
      { scenario: 'throughput', what: 'commands/s completed, 200/s offered', portcullis: '87.2', floor: '199.8', ratio: '' },
      { scenario: 'throughput', what: 'CPU per command under load, processes taking part', portcullis: '19.2 ms', floor: '8.8 ms', ratio: '2.2×' },
      { scenario: 'throughput', what: 'p99 loaded vs idle', portcullis: '19.6× (4900 / 250 ms)', floor: '6× (420 / 70 ms)', ratio: '' },
      { scenario: 'scale', what: 'all 10000 systems', portcullis: '14892 ms', floor: '2678 ms', ratio: '5.56×' },
    ]);
  });

  it('leaves out a scenario whose floor did not run', () => {
    const withoutFloors = results.filter((result) => !result.name.startsWith('baseline-kafka-'));
    expect(sideBySide(withoutFloors).map((row) => row.scenario)).toEqual(['postgres-1000']);
  });

  it('says when a floor failed, in the side-by-side table and in the scenario notes', () => {
    const failed = results
      .filter((result) => result.name !== 'baseline-kafka-scale')
      .map((result) => (result.name === 'scale' ? { ...result, baseline_error: 'consumers never joined', ratio_global_revoke: undefined } : result));
    const rows = sideBySide(failed).filter((row) => row.scenario === 'scale');
    expect(rows).toEqual([{ scenario: 'scale', what: 'its raw-Kafka floor', portcullis: '', floor: 'failed: consumers never joined', ratio: '' }]);
    expect(scenarioTable(failed.filter((result) => result.name === 'scale'))).toContain('its raw-Kafka floor failed: consumers never joined');
  });

  it('prints a table with one line per row', () => {
    const lines = sideBySideTable(sideBySide(results)).split('\n');
    expect(lines).toHaveLength(2 + 6);
    expect(lines[0]).toMatch(/^\| scenario +\| what +\| Portcullis +\| floor +\| ratio +\|$/);
    expect(lines[6]).toContain('6× (420 / 70 ms)');
  });
});

describe('targets', () => {
  it('judges each target from the figures, the floors only informing', () => {
    expect(targets(results).map((target) => [target.scenario, target.what, target.measured, target.met])).toEqual([
      ['tte-noop-10', 'p99 vs raw Kafka p99', '2.5×', false],
      ['postgres-1000', 'revoke vs direct SQL (p50)', '1.1×', true],
      ['throughput', 'commands/s completed', '87.2', false],
      ['throughput', 'p99 loaded vs idle', '19.6× (4900 / 250 ms)', false],
      ['scale', 'all 10000 systems enforced', '14892 ms', false],
    ]);
  });
});
