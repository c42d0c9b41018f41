import { DatabaseError } from 'pg';
import { classifyPostgresFailure } from './postgres-failure';

function serverError(code: string, message: string): DatabaseError {
  const error = new DatabaseError(message, message.length, 'error');
  error.code = code;
  return error;
}

describe('classifyPostgresFailure', () => {
  it.each([
    ['57P01', 'terminating connection due to administrator command'],
    ['57014', 'canceling statement due to statement timeout'],
    ['55P03', 'canceling statement due to lock timeout'],
    ['53300', 'sorry, too many clients already'],
    ['08006', 'connection failure'],
  ])('treats SQLSTATE %s (%s) as retriable', (code, message) => {
    expect(classifyPostgresFailure(serverError(code, message))).toEqual({
      outcome: 'failed-retriable',
      detail: `${message} (SQLSTATE ${code})`,
    });
  });

  it('treats a missing privilege as permanent and says which privileges the adapter needs', () => {
    const failure = classifyPostgresFailure(serverError('42501', 'permission denied to alter role'));
    expect(failure.outcome).toBe('failed-permanent');
    expect(failure.detail).toMatch(/^permission denied to alter role \(SQLSTATE 42501\): .*CREATEROLE.*ADMIN OPTION.*pg_signal_backend/);
  });

  it.each([
    ['28P01', 'password authentication failed for user "portcullis"'],
    ['3D000', 'database "stock" does not exist'],
  ])('treats SQLSTATE %s as permanent', (code, message) => {
    expect(classifyPostgresFailure(serverError(code, message)).outcome).toBe('failed-permanent');
  });

  it('treats network and driver errors without a SQLSTATE as retriable', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' });
    expect(classifyPostgresFailure(refused)).toEqual({ outcome: 'failed-retriable', detail: 'connect ECONNREFUSED 10.0.0.5:5432' });
    expect(classifyPostgresFailure(new Error('Connection terminated due to connection timeout')).outcome).toBe('failed-retriable');
  });
});
