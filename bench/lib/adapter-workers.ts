import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type {
  StartAdaptersParams,
  StartBaselineParams,
  WorkerReady,
  WorkerRequest,
  WorkerResponse,
  WorkerUsage,
} from './worker-protocol';

const WORKER_ENTRY = resolve(__dirname, '..', 'adapter-worker.ts');

/** A request without its id (the id is added when it is sent). */
type WorkerRequestBody = WorkerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void; method: string };

/** One forked adapter worker process (bench/adapter-worker.ts) and a small request/response channel to it. */
export class AdapterWorker {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited = false;
  private readonly exit: Promise<void>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    this.exit = new Promise((resolveExit) =>
      child.once('exit', (code, signal) => {
        this.exited = true;
        for (const { reject, method } of this.pending.values()) reject(new Error(`${name} exited (${signal ?? code}) during ${method}`));
        this.pending.clear();
        resolveExit();
      }),
    );
    child.on('message', (message: WorkerResponse | WorkerReady) => {
      if ('ready' in message) return;
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (message.ok) waiting.resolve(message.result);
      else waiting.reject(new Error(`${name}: ${waiting.method} failed: ${message.error}`));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Forks a worker whose stdout/stderr (the adapters' JSON log lines) go to `<logDir>/<name>.log`. */
  static async start(
    name: string,
    logDir: string,
    threadPoolSize: number,
    profiling?: { preload: string; env: NodeJS.ProcessEnv },
  ): Promise<AdapterWorker> {
    const log = openSync(join(logDir, `${name}.log`), 'a');
    let child: ChildProcess;
    try {
      child = fork(WORKER_ENTRY, [], {
        execArgv: ['--import', 'tsx', ...(profiling ? ['--require', profiling.preload] : [])],
        stdio: ['ignore', log, log, 'ipc'],
        env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1', UV_THREADPOOL_SIZE: String(threadPoolSize), ...profiling?.env },
      });
    } finally {
      closeSync(log);
    }
    await new Promise<void>((resolveReady, rejectReady) => {
      const timer = setTimeout(() => rejectReady(new Error(`${name} did not start within 60 s`)), 60_000);
      child.once('message', () => {
        clearTimeout(timer);
        resolveReady();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        rejectReady(new Error(`${name} exited during start (code ${code}); see ${join(logDir, `${name}.log`)}`));
      });
    });
    return new AdapterWorker(name, child);
  }

  private call<T>(request: WorkerRequestBody): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolveCall, rejectCall) => {
      this.pending.set(id, { resolve: resolveCall as (value: unknown) => void, reject: rejectCall, method: request.method });
      this.child.send({ ...request, id } as WorkerRequest);
    });
  }

  startAdapters(params: StartAdaptersParams): Promise<number> {
    return this.call({ method: 'startAdapters', params });
  }

  stopAdapters(): Promise<void> {
    return this.call({ method: 'stopAdapters' });
  }

  startBaseline(params: StartBaselineParams): Promise<number> {
    return this.call({ method: 'startBaseline', params });
  }

  stopBaseline(): Promise<void> {
    return this.call({ method: 'stopBaseline' });
  }

  usage(): Promise<WorkerUsage> {
    return this.call({ method: 'usage' });
  }

  /** Asks the worker to stop its adapters and exit; kills it if it does not within 15 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    this.call({ method: 'shutdown' }).catch(() => undefined);
    await this.exit;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** Spreads `count` items over workers, `perWorker` at most each: [0..9], [10..19], ... */
export function chunk<T>(items: readonly T[], perWorker: number): T[][] {
  const chunks: T[][] = [];
  for (let index = 0; index < items.length; index += perWorker) chunks.push(items.slice(index, index + perWorker));
  return chunks;
}
