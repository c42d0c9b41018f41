/**
 * `npm run bench`: measures Portcullis end to end on this machine against a real Kafka broker and real
 * PostgreSQL servers, and writes bench/results/latest.json and bench/results/tte-by-adapters.svg.
 * See bench/README.md for what each scenario measures and how.
 *
 *   npm run bench                       # full run (about 10 minutes on 2 cores)
 *   npm run bench -- --quick            # reduced run, about 2 minutes; writes bench/results/quick.json
 *   npm run bench -- --only tte,scale   # some scenarios (tte, postgres, scale, throughput); writes partial.json
 *   npm run bench -- --no-build         # use the policy service already built in dist/
 *   npm run bench -- --samples 500      # samples per tte-noop-N (default 200; 20 with --quick)
 *   npm run bench -- --adapters 1,10    # which tte-noop-N to run (default 1,10,50)
 *   npm run bench -- --partitions 60    # partitions per topic (default 6)
 *   npm run bench -- --profile          # also write CPU profiles of the policy service and the adapter workers
 *   npm run bench -- --kafka-listener sasl      # Kafka clients without TLS (SASL_PLAINTEXT; default: tls, SASL_SSL)
 *   npm run bench -- --kafka-listener tooling   # services on the broker's plaintext loopback listener
 *
 * Everything it starts (broker, PostgreSQL servers, the policy service, adapter workers) stops at the end,
 * also on Ctrl-C. Logs of the last runs stay in .portcullis/bench/<run>/logs.
 */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchOptions, SCENARIOS, type BenchOptions, type ScenarioName } from './lib/bench-options';
import { BenchStack, ROOT, type KafkaListener } from './lib/bench-stack';
import { scenarioTable, sideBySide, sideBySideTable, targets, targetTable, tteChart, writeAtomically, type ScenarioResult } from './lib/report';
import { median, round } from './lib/stats';
import { runPostgresScenario } from './scenarios/postgres-1000.scenario';
import { runScaleScenario } from './scenarios/scale.scenario';
import { runThroughputScenario } from './scenarios/throughput.scenario';
import { runTteScenarios } from './scenarios/tte-noop.scenario';

function parseOptions(): { options: BenchOptions; build: boolean; profile: boolean; kafkaListener: KafkaListener; partial: boolean } {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      samples: { type: 'string' },
      adapters: { type: 'string' },
      partitions: { type: 'string' },
      'kafka-listener': { type: 'string', default: 'tls' },
    },
    strict: true,
  });
  const options = benchOptions(values.quick ?? false);
  if (values.samples) {
    const samples = Number(values.samples);
    if (!Number.isInteger(samples) || samples < 5) throw new Error('--samples must be an integer of at least 5');
    options.tte.samples = samples;
  }
  if (values.adapters) {
    const counts = values.adapters.split(',').map((count) => Number(count.trim()));
    if (counts.some((count) => !Number.isInteger(count) || count < 1)) throw new Error('--adapters takes positive integers, e.g. --adapters 1,10');
    options.tte.adapters = counts;
  }
  if (values.partitions) {
    const partitions = Number(values.partitions);
    if (!Number.isInteger(partitions) || partitions < 1) throw new Error('--partitions must be a positive integer');
    options.partitions = partitions;
  }
  if (values.only) {
    const wanted = values.only.split(',').map((name) => name.trim());
    const unknown = wanted.filter((name) => !SCENARIOS.includes(name as ScenarioName));
    if (unknown.length) throw new Error(`--only: unknown scenario(s) ${unknown.join(', ')}; choose from ${SCENARIOS.join(', ')}`);
    options.scenarios = SCENARIOS.filter((name) => wanted.includes(name));
  }
  const kafkaListener = values['kafka-listener'];
  if (kafkaListener !== 'sasl' && kafkaListener !== 'tls' && kafkaListener !== 'tooling') throw new Error('--kafka-listener must be sasl, tls or tooling');
  const partial = Boolean(values.only || values.adapters || values.samples || values.partitions);
  return { options, build: !values['no-build'], profile: values.profile ?? false, kafkaListener, partial };
}

/** Median latency of a 4 KiB write + fsync in the run's directory: what the adapters' durable state pays per save. */
function fsyncMs(dir: string): number {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let index = 0; index < 30; index++) {
      const started = performance.now();
      writeSync(fd, block);
      fsyncSync(fd);
      times.push(performance.now() - started);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return round(median(times), 2);
}

/** Set on Ctrl-C or SIGTERM: what fails afterwards is the shutdown, not the benchmark. */
let interrupted = false;

async function main(): Promise<number> {
  const { options, build, profile, kafkaListener, partial } = parseOptions();
  const stack = BenchStack.create();
  if (profile) stack.enableProfiling();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n[bench] ${signal}: stopping everything ...`);
    void stack.stop().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = Date.now();
  const results: ScenarioResult[] = [];
  const environment = {
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    memory_gb: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    kernel: release(),
    load_average_at_start: loadavg().map((value) => round(value, 2)),
    fsync_4k_ms: fsyncMs(stack.workDir),
  };
  try {
    await stack.start({ build, kafkaListener, partitions: options.partitions });
    console.log(
      `[bench] ${options.mode} run: ${options.scenarios.join(', ')}; Kafka clients on the ${{ sasl: 'SASL/SCRAM listener (ACLs enforced)', tls: 'TLS listener (SASL_SSL, ACLs enforced)', tooling: 'plaintext tooling listener' }[kafkaListener]}; fsync of 4 KiB takes ${environment.fsync_4k_ms} ms here`,
    );
    for (const scenario of options.scenarios) {
      switch (scenario) {
        case 'tte':
          results.push(...(await runTteScenarios(stack, options)));
          break;
        case 'postgres':
          results.push(await runPostgresScenario(stack, options));
          break;
        case 'scale':
          results.push(...(await runScaleScenario(stack, options)));
          break;
        case 'throughput':
          results.push(...(await runThroughputScenario(stack, options)));
          break;
      }
      console.log(`\n${scenarioTable(results)}\n`);
    }
  } finally {
    await stack.stop(); // idempotent: after Ctrl-C this waits for the stop the signal started
  }
  if (interrupted) return 130;

  const durationS = Math.round((Date.now() - started) / 1000);
  const found = targets(results);
  console.log(`\nPortcullis benchmark (${options.mode}, ${durationS} s, ${environment.cpus} CPUs, load ${environment.load_average_at_start.join(' ')} at start)\n`);
  console.log(scenarioTable(results));
  console.log(`\nTargets\n\n${targetTable(found)}\n`);
  const floors = sideBySide(results);
  if (floors.length > 0) console.log(`Side by side with the floor, same run\n\n${sideBySideTable(floors)}\n`);

  // Only a full run of every scenario is the committed record (latest.json); a quick or partial run
  // (--quick, --only, --adapters, --samples) writes quick.* or partial.*, which git ignores.
  const resultsDir = join(ROOT, 'bench', 'results');
  const prefix = options.mode === 'quick' ? 'quick' : partial ? 'partial' : undefined;
  const jsonFile = join(resultsDir, prefix ? `${prefix}.json` : 'latest.json');
  const chartFile = join(resultsDir, prefix ? `${prefix}-tte-by-adapters.svg` : 'tte-by-adapters.svg');
  const document = {
    generated_at: new Date().toISOString(),
    mode: options.mode,
    duration_s: durationS,
    environment: { ...environment, load_average_at_end: loadavg().map((value) => round(value, 2)) },
    settings: { ...options, kafkaListener, restoreApproval: 'four-eyes' },
    scenarios: results,
    targets: found,
    side_by_side: floors,
  };
  writeAtomically(jsonFile, `${JSON.stringify(document, null, 2)}\n`);
  if (results.some((result) => result.name.startsWith('tte-noop-'))) {
    const subtitle = `${options.mode} run ${document.generated_at.slice(0, 16).replace('T', ' ')} UTC, ${environment.cpus} CPUs; dashed: raw kafkajs round trip to N consumers`;
    writeAtomically(chartFile, tteChart(results, subtitle));
  }
  console.log(`[bench] wrote ${jsonFile}${results.some((r) => r.name.startsWith('tte-noop-')) ? ` and ${chartFile}` : ''}`);
  console.log(`[bench] logs: ${stack.logDir}`);
  if (stack.profileDir) console.log(`[bench] CPU profiles: ${stack.profileDir} (npx tsx bench/tools/summarize-cpu-profile.ts <file>)`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (interrupted) return; // the signal handler exits once everything has stopped
    console.error(`[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
    process.exit(1);
  },
);
