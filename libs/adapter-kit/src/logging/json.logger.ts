import { LOG_LEVELS, type AdapterLogger, type LogFields, type LogLevel } from './adapter-logger';

export interface JsonLoggerOptions {
  /** Lines below this level are dropped. Default `info`. */
  level?: LogLevel;
  fields?: LogFields;
  /** Where lines go. Default: stdout. */
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
    this.write = options.write ?? ((line) => process.stdout.write(`${line}\n`));
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
