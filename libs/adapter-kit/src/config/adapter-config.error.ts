/** The adapter's configuration is missing or invalid. Raised at start, before anything connects. */
export class AdapterConfigError extends Error {
  override readonly name = 'AdapterConfigError';

  constructor(readonly issues: readonly string[]) {
    super(`invalid adapter configuration:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`);
  }
}
