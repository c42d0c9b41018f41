/**
 * Child processes that must never outlive this Node process: the lifetime policy shared by the
 * test-server harnesses (kafka-broker.ts, redis-server.ts, slapd-server.ts).
 *
 *   const [command, args] = withParentDeathSignal(binary, serverArgs);
 *   const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
 *   child.unref();
 *   trackChild(child);                   // or trackChild(child, signalMyGroup)
 *
 * - A tracked child gets SIGKILL when this process exits ('exit' handler); it is untracked when it
 *   exits (or fails to spawn).
 * - On SIGINT/SIGTERM/SIGHUP: if the application also handles the signal (graceful shutdown, then
 *   exit), the children get SIGTERM for a controlled stop and whatever still runs at 'exit' gets
 *   SIGKILL. Otherwise our listener has replaced Node's default action (die): the children get
 *   SIGKILL and this process dies of the signal as Node would have.
 * - The handlers are installed only while at least one child is tracked, so a harness that runs
 *   nothing changes nothing about how this process reacts to signals.
 * - One registry and one set of handlers for every harness in the process: with one set per
 *   harness, each would take the others' signal listeners for the application's, and nobody would
 *   let Node die of an unhandled signal.
 * - If this process dies without running handlers (SIGKILL, OOM killer), only the kernel can still
 *   act: withParentDeathSignal() runs the command under `setpriv --pdeathsig KILL` (prctl
 *   PDEATHSIG), when setpriv is installed.
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Delivers a signal to a tracked child (e.g. to its whole process group); must not throw. */
export type ChildSignaller = (child: ChildProcess, signal: NodeJS.Signals) => void;

/** `child.kill(signal)`, ignoring a child that is already gone. */
export function signalChild(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    child.kill(signal);
  } catch {
    /* already gone */
  }
}

// ---------------------------------------------------------------------------------------------
// Killing children when this process goes away. One set of handlers for all children, installed
// while at least one child process exists, removed when the last one has exited.

const live = new Map<ChildProcess, ChildSignaller>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let handlersInstalled = false;

function signalAll(signal: NodeJS.Signals): void {
  for (const [child, signaller] of live) signaller(child, signal);
}

const onExit = (): void => signalAll('SIGKILL');

const onSignal = (signal: NodeJS.Signals): void => {
  if (process.listeners(signal).some((listener) => listener !== onSignal)) {
    // The application handles this signal (graceful shutdown, then exit): let the children shut
    // down cleanly now; whatever still runs at 'exit' gets SIGKILL.
    signalAll('SIGTERM');
    return;
  }
  // Nobody else handles it: our listener replaced Node's default action (die), so kill the
  // children and die of the signal as Node would have.
  signalAll('SIGKILL');
  uninstallHandlers();
  process.kill(process.pid, signal);
};

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.removeListener('exit', onExit);
  for (const signal of SIGNALS) process.removeListener(signal, onSignal);
}

function untrack(child: ChildProcess): void {
  live.delete(child);
  if (live.size === 0) uninstallHandlers();
}

/**
 * Kill `child` (through `signaller`, default signalChild) when this process exits or dies of a
 * signal, as described above, until the child exits. Call it right after spawn(), before adding
 * the caller's own 'exit' listener, so the child is untracked before the caller hears of its exit.
 */
export function trackChild(child: ChildProcess, signaller: ChildSignaller = signalChild): void {
  live.set(child, signaller);
  installHandlers();
  child.once('exit', () => untrack(child));
  child.once('error', () => {
    // A spawn failure: no process, and no 'exit' event will follow.
    if (child.pid === undefined) untrack(child);
  });
}

// ---------------------------------------------------------------------------------------------
// The kernel's part: PDEATHSIG.

function setprivBinary(): string | undefined {
  const dirs = ['/usr/bin', ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'setpriv');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * `[command, args]` to spawn so that the kernel SIGKILLs the process when this one dies, even
 * without running handlers: `setpriv --pdeathsig KILL -- command ...args` (setpriv execs the
 * command, so the child's pid stays the server's). Unchanged when setpriv (util-linux) is missing.
 */
export function withParentDeathSignal(command: string, args: readonly string[]): [string, string[]] {
  const setpriv = setprivBinary();
  return setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]];
}
