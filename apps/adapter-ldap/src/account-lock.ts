/**
 * The password-policy lock of an account (draft-behera-ldap-password-policy, OpenLDAP's ppolicy
 * overlay): while `pwdAccountLockedTime` is set, binds fail with invalidCredentials (49).
 *
 * - `000001010000Z` locks the account until an administrator deletes the attribute.
 * - Any other value is the time of a lockout after failed binds; it ends by itself once the policy's
 *   `pwdLockoutDuration` has passed (the next successful bind deletes it), so it does not keep anyone
 *   out for the length of an incident.
 */
export const LOCKED_TIME_ATTRIBUTE = 'pwdAccountLockedTime';
export const PERMANENT_LOCK_TIME = '000001010000Z';

/** An account entry as the directory returned it. */
export interface DirectoryAccount {
  /** As the server spelled it in a search result: passed back verbatim, never parsed or built. */
  dn: string;
  /** The value of the principal attribute (the first, if several), where it was read. */
  name?: string;
  /** `pwdAccountLockedTime`, when set. */
  lockedTime?: string;
}

/** Locked until an administrator unlocks (also in the 14-digit form `00000101000000Z`). */
export function isPermanentlyLocked(account: DirectoryAccount): boolean {
  return account.lockedTime?.startsWith('000001010000') ?? false;
}
