import { writeSync } from 'node:fs';
import { LOG_LEVELS, type AdapterLogger, type LogFields, type LogLevel } from './adapter-logger';

/**
 * Collects the lines written in one turn of the event loop and hands them to `out` in ONE write on the next
 * turn: an adapter logs a few lines per decision, and a write to a pipe (stdout under a container runtime or
 * a supervisor) costs about as much CPU as the rest of handling the decision. Order is kept. On exit (also
 * after an uncaught exception) whatever is pending is written synchronously; only a SIGKILL loses lines, at
 * most one turn's; a graceful shutdown flushes them (`flushAdapterLogs`, called by the Nest host).
 */
export class LineBatcher {
  private pending: string[] = [];
  private scheduled = false;

  constructor(
    private readonly out: (chunk: string) => void,
    private readonly outSync: (chunk: string) => void = out,
  ) {}

  readonly write = (line: string): void => {
    this.pending.push(line, '\n');
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  };

  /** Writes what is pending now, synchronously if asked (at exit). */
  readonly flush = (sync = false): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const chunk = this.pending.join('');
    this.pending = [];
    (sync === true ? this.outSync : this.out)(chunk);
  };
}

let stdoutBatcher: LineBatcher | undefined;

/**
 * Writes the adapter's pending log lines now, synchronously. Called when the adapter has stopped: a
 * signal re-raised after a graceful shutdown ends the process without an `exit` event.
 */
export function flushAdapterLogs(): void {
  stdoutBatcher?.flush(true);
}

/** The process's one batched writer to stdout (flushed at exit). */
function stdoutLines(): (line: string) => void {
  if (!stdoutBatcher) {
    const batcher = new LineBatcher(
      (chunk) => process.stdout.write(chunk),
      (chunk) => {
        try {
          writeSync(1, chunk);
        } catch {
          // stdout is gone: nothing left to tell
        }
      },
    );
    process.once('exit', () => batcher.flush(true));
    process.once('beforeExit', () => batcher.flush(true));
    stdoutBatcher = batcher;
  }
  return stdoutBatcher.write;
}

export interface JsonLoggerOptions {
  /** Lines below this level are dropped. Default `info`. */
  level?: LogLevel;
  fields?: LogFields;
  /** Where lines go. Default: stdout, one write per turn of the event loop (`LineBatcher`). */
  write?: (line: string) => void;
}

/** Writes one JSON object per line: `{"time", "level", "msg", ...fields}`. */
export class JsonLogger implements AdapterLogger {
  private readonly threshold: number;
  private readonly fields: LogFields;
  private readonly write: (line: string) => void;

  constructor(options: JsonLoggerOptions = {}) {
    this.threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
    this.fields = options.fields ?? {};
    this.write = options.write ?? stdoutLines();
  }

  debug(message: string, fields?: LogFields): void {
    this.log('debug', message, fields);
  }

  info(message: string, fields?: LogFields): void {
    this.log('info', message, fields);
  }

  warn(message: string, fields?: LogFields): void {
    this.log('warn', message, fields);
  }

  error(message: string, fields?: LogFields): void {
    this.log('error', message, fields);
  }

  child(fields: LogFields): AdapterLogger {
    return new JsonLogger({
      level: LOG_LEVELS[this.threshold],
      fields: { ...this.fields, ...fields },
      write: this.write,
    });
  }

  private log(level: LogLevel, message: string, fields: LogFields = {}): void {
    if (LOG_LEVELS.indexOf(level) < this.threshold) return;
    this.write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...this.fields, ...fields }));
  }
}
