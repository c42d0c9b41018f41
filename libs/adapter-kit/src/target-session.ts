import type { EnforcementResult } from './access-enforcer';
import { CorruptJournalError } from './enforcement-journal';

/** A connection to a target system that must be closed after use. */
export interface TargetSession {
  close(): Promise<void>;
}

/**
 * Opens a session on the target, runs `work` with it and always closes it; an error (connecting included)
 * becomes `onError`'s answer. The connect / work / close / classify frame every enforcer's calls share.
 */
export async function withTargetSession<S extends TargetSession, T>(
  open: () => Promise<S>,
  work: (session: S) => Promise<T>,
  onError: (error: unknown) => T,
): Promise<T> {
  let session: S | undefined;
  try {
    session = await open();
    return await work(session);
  } catch (error) {
    return onError(error);
  } finally {
    await session?.close();
  }
}

/**
 * `withTargetSession` for `revoke` and `restore`: an unreadable journal goes on to the runtime (which
 * reports it as a permanent failure); every other error is classified by the enforcer.
 */
export function enforceWithTargetSession<S extends TargetSession>(
  open: () => Promise<S>,
  work: (session: S) => Promise<EnforcementResult>,
  classify: (error: unknown) => EnforcementResult,
): Promise<EnforcementResult> {
  return withTargetSession(open, work, (error) => {
    if (error instanceof CorruptJournalError) throw error;
    return classify(error);
  });
}
