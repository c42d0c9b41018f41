/*
 * Preloaded (`node --require`) into the policy service and the adapter workers by `npm run bench -- --profile`.
 * Samples the CPU from start. Whenever the bench rewrites `$BENCH_CPU_PROFILE_DIR/checkpoint`
 * ("<sequence> <phase>"), it writes what it sampled since the previous checkpoint to
 * `$BENCH_CPU_PROFILE_DIR/<phase>--<label>-<pid>.cpuprofile` and starts again. (A file, not a signal:
 * Nest's shutdown hooks treat SIGUSR2 as a shutdown.) Open the files in Chrome DevTools or summarise them
 * with `npx tsx bench/tools/summarize-cpu-profile.ts <file>`.
 */
'use strict';
const inspector = require('node:inspector');
const fs = require('node:fs');
const path = require('node:path');

const { isMainThread } = require('node:worker_threads');

const dir = process.env.BENCH_CPU_PROFILE_DIR;
// Main thread only: a loader's worker thread (tsx runs one) would write its own, nearly idle, profile
// under the same pid and overwrite the main thread's.
if (dir && isMainThread) {
  const label = process.env.BENCH_PROCESS_LABEL || 'process';
  const checkpointFile = path.join(dir, 'checkpoint');
  const read = () => {
    try {
      return fs.readFileSync(checkpointFile, 'utf8').trim();
    } catch {
      return '';
    }
  };
  let seen = read();
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable', () =>
    session.post('Profiler.setSamplingInterval', { interval: 1000 }, () => session.post('Profiler.start')),
  );
  setInterval(() => {
    const current = read();
    if (current === seen) return;
    seen = current;
    const phase = current.split(' ').slice(1).join(' ') || 'unnamed';
    session.post('Profiler.stop', (error, result) => {
      if (!error && result) fs.writeFileSync(path.join(dir, `${phase}--${label}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
      session.post('Profiler.start');
    });
  }, 200).unref();
}
