import type { logCreator, LogEntry } from 'kafkajs';
import type { AdapterLogger, LogFields } from '../logging/adapter-logger';

/**
 * Sends kafkajs' own log lines through the adapter's JSON logger. The client retries what it reports,
 * so its errors are logged as warnings (self-healing); an outage that lasts shows in `/health`.
 */
export function kafkaLogCreator(logger: AdapterLogger): logCreator {
  const kafkaLogger = logger.child({ component: 'kafkajs' });
  return () =>
    ({ namespace, log }: LogEntry) => {
      const { message, broker, groupId, error, retryCount } = log;
      const fields: LogFields = { namespace, broker, groupId, error, retryCount };
      kafkaLogger.warn(message, fields);
    };
}
