import { JsonLogger, LineBatcher } from './json.logger';

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

  describe('LineBatcher', () => {
    const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

    it('hands the lines of one turn to the output in one write, in order, on the next turn', async () => {
      const writes: string[] = [];
      const batcher = new LineBatcher((chunk) => writes.push(chunk));

      batcher.write('{"n":1}');
      batcher.write('{"n":2}');
      batcher.write('{"n":3}');
      expect(writes).toEqual([]);
      await nextTurn();
      expect(writes).toEqual(['{"n":1}\n{"n":2}\n{"n":3}\n']);

      batcher.write('{"n":4}');
      await nextTurn();
      expect(writes).toEqual(['{"n":1}\n{"n":2}\n{"n":3}\n', '{"n":4}\n']);
    });

    it('writes what is pending synchronously when flushed at exit, and nothing twice', async () => {
      const writes: string[] = [];
      const syncWrites: string[] = [];
      const batcher = new LineBatcher((chunk) => writes.push(chunk), (chunk) => syncWrites.push(chunk));

      batcher.write('last words');
      batcher.flush(true);
      await nextTurn();

      expect(syncWrites).toEqual(['last words\n']);
      expect(writes).toEqual([]);
    });
  });
});
