export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export type LogValue = string | number | boolean | null | undefined | readonly string[];

/** Fields that go on every line: `adapterId`, `systemId`, `commandId`, `generation`, ... */
export type LogFields = Readonly<Record<string, LogValue>>;

/**
 * Structured logging for adapters. `warn` is for problems that heal themselves (a retried
 * enforcement, a skipped invalid message); `error` is for what needs a person.
 */
export interface AdapterLogger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): AdapterLogger;
}
