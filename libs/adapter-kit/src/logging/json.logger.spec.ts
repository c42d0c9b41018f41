import { JsonLogger } from './json.logger';

describe('JsonLogger', () => {
  it('writes one JSON object per line with the fields of every parent logger', () => {
    const lines: string[] = [];
    const logger = new JsonLogger({ write: (line) => lines.push(line) }).child({ adapterId: 'pg-main' });

    logger.child({ systemId: 'stock-db' }).info('decision received', { commandId: 'c-1', generation: 7 });

    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toEqual({
      time: expect.any(String),
      level: 'info',
      msg: 'decision received',
      adapterId: 'pg-main',
      systemId: 'stock-db',
      commandId: 'c-1',
      generation: 7,
    });
  });

  it('drops lines below its level, also in child loggers', () => {
    const lines: string[] = [];
    const logger = new JsonLogger({ level: 'warn', write: (line) => lines.push(line) });

    logger.info('quiet');
    logger.child({ systemId: 'stock-db' }).debug('quieter');
    logger.child({ systemId: 'stock-db' }).warn('heard');

    expect(lines.map((line) => JSON.parse(line).msg)).toEqual(['heard']);
  });
});
