import type { EnforcementJournal } from '../access-enforcer';

/** A journal in memory, for testing an enforcer on its own; `onChange` sees every write and clear. */
export class InMemoryEnforcementJournal implements EnforcementJournal {
  constructor(
    public value?: unknown,
    private readonly onChange?: (value: unknown) => void,
  ) {}

  read<T>(): T | undefined {
    return structuredClone(this.value) as T | undefined;
  }

  async write<T>(value: T): Promise<void> {
    this.value = JSON.parse(JSON.stringify(value));
    this.onChange?.(this.value);
  }

  async clear(): Promise<void> {
    this.value = undefined;
    this.onChange?.(undefined);
  }
}
