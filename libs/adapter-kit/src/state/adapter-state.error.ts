/** A state file exists but cannot be read or does not hold a valid record. Never silently reset. */
export class AdapterStateError extends Error {
  override readonly name = 'AdapterStateError';
}
