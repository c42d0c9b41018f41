/**
 * Waits until `probe` returns without throwing (the last error is reported on timeout). Integration
 * specs wait for asynchronous outcomes with this, never with fixed sleeps.
 */
export async function eventually<T>(probe: () => Promise<T> | T, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const reason = lastError instanceof Error ? lastError.message : String(lastError);
      throw new Error(`condition not met within ${timeoutMs} ms: ${reason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
