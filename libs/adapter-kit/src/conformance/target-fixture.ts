import type { AccessEnforcer } from '../access-enforcer';

/** An open session (connection) of a principal on the target. */
export interface TargetSession {
  /** Whether the session still works: a round trip over it succeeds. */
  isOpen(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * What an adapter hands the conformance suite: its enforcer, a system configuration pointing at a real
 * target, and the means to create principals there and to check their access the way a user would.
 *
 * The target may be shared with other specs (one after another, never at the same time). A revoke
 * affects every principal on it, so every scenario ends restored, and the suite asserts only on the
 * principals it created.
 */
export interface TargetFixture<TSystem> {
  /** The kind the enforcer handles; the suite checks that `enforcer().kind` says the same. */
  readonly kind: string;
  /**
   * Whether the enforcer ends the open sessions of the principals it revokes. `false` where the target
   * offers no way to (LDAP): a revoke must then report `sessionsTerminated` 0 and say in its detail that
   * sessions are left as residual access (the detail must contain "residual" and "session").
   */
  readonly endsSessions: boolean;
  /**
   * Principals of the target the enforcer must leave alone in every scenario (the fixture's own
   * administrator, say), unless the enforcer spares them by itself.
   */
  readonly exemptPrincipals?: readonly string[];
  /**
   * Labels for the hostile-names scenario, instead of `DEFAULT_HOSTILE_LABELS`: leave out what the
   * target cannot hold at all (Redis user names have no spaces) and add the target's own metacharacters.
   */
  readonly hostileLabels?: readonly string[];

  /** Runs once before the scenarios (connect, start a proxy). */
  setUp?(): Promise<void>;
  enforcer(): AccessEnforcer<TSystem>;
  /** The configuration of a system that is the real target, as the enforcer receives it. */
  system(): TSystem;
  /**
   * Creates a principal unique to this run, enabled unless `enabled` is false, and returns its name on the
   * target. `label` is never the same twice in a run and may contain hostile characters (quotes,
   * semicolons, spaces, unicode and the target's own metacharacters): create it safely, and fail rather
   * than silently shorten or change the name.
   */
  createPrincipal(label: string, options?: { enabled?: boolean }): Promise<string>;
  /**
   * Whether the principal can authenticate right now, tried as its user would. Resolves false only when
   * the target refuses the principal; rejects for anything else (the target unreachable), so that no
   * scenario passes by accident.
   */
  canAuthenticate(principal: string): Promise<boolean>;
  /** Opens a session as the principal; the suite closes it after the scenario. */
  openSession(principal: string): Promise<TargetSession>;
  /** Gives the principal its access back by hand, as an administrator working around Portcullis would. */
  enableOutOfBand(principal: string): Promise<void>;
  /**
   * Makes the target unreachable for the enforcer (connections refused, open ones cut) and reachable
   * again, where the fixture can simulate an outage; a TCP proxy in front of the target does for any
   * target. Every adapter must show how it behaves when its target is unreachable.
   */
  takeDown(): Promise<void>;
  bringUp(): Promise<void>;
  /** Runs once after the scenarios: removes every principal the fixture created and disconnects. */
  cleanup(): Promise<void>;
}
