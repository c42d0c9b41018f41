import type { TargetStatus } from '../database/entities';
import { aggregateCommandStatus } from './command-status';

const deadline = new Date('2026-11-28T10:00:00Z');
const before = new Date('2026-11-28T09:59:00Z');
const after = new Date('2026-11-28T10:00:01Z');
const targets = (...statuses: TargetStatus[]) => statuses.map((status) => ({ status }));

describe('aggregateCommandStatus', () => {
  it('is pending while systems have not confirmed within the deadline', () => {
    expect(aggregateCommandStatus(targets('enforced', 'pending'), deadline, before)).toBe('pending');
    expect(aggregateCommandStatus(targets('delivered'), deadline, before)).toBe('pending');
  });

  it('is overdue once the deadline passes with a system still unconfirmed', () => {
    expect(aggregateCommandStatus(targets('enforced', 'delivered'), deadline, after)).toBe('overdue');
    expect(aggregateCommandStatus(targets('failed', 'pending'), deadline, after)).toBe('overdue');
  });

  it('is enforced when every system confirmed, late or not', () => {
    expect(aggregateCommandStatus(targets('enforced', 'enforced'), deadline, after)).toBe('enforced');
  });

  it('is enforced for a group without systems', () => {
    expect(aggregateCommandStatus([], deadline, before)).toBe('enforced');
  });

  it('is partial when some systems enforced and the others failed', () => {
    expect(aggregateCommandStatus(targets('enforced', 'failed'), deadline, before)).toBe('partial');
  });

  it('is failed when no system enforced and none is waiting', () => {
    expect(aggregateCommandStatus(targets('failed', 'failed'), deadline, before)).toBe('failed');
  });

  it('ignores systems a newer decision superseded', () => {
    expect(aggregateCommandStatus(targets('superseded', 'enforced'), deadline, after)).toBe('enforced');
    expect(aggregateCommandStatus(targets('superseded', 'superseded'), deadline, after)).toBe('superseded');
  });
});
