import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementResult,
  InspectionContext,
  InspectionResult,
} from '@portcullis/adapter-kit';
import { enforceWithTargetSession, readJournal, withTargetSession } from '@portcullis/adapter-kit';
import { z } from 'zod';
import { isPermanentlyLocked, PERMANENT_LOCK_TIME, type DirectoryAccount } from './account-lock';
import { LdapAccountRepository, type AccountRepository, type AccountRepositoryFactory } from './ldap-account.repository';
import { classifyLdapFailure, isServerAnswer, type LdapFailure } from './ldap-failure';
import type { LdapSystemConfig } from './ldap-system.config';

/**
 * What the enforcer remembers per system: the accounts it locked and still owes an unlock, each with
 * the lockout it replaced (a lockout after failed binds, which restore puts back).
 */
export const LdapAccountJournalSchema = z.object({
  lockedAccounts: z.array(z.object({ dn: z.string(), previousLockedTime: z.string().optional() })),
});
export type LdapAccountJournal = z.infer<typeof LdapAccountJournalSchema>;
type LockedAccount = LdapAccountJournal['lockedAccounts'][number];

const NAMES_IN_DETAIL = 20;
const RESIDUAL_SESSIONS =
  "residual access: sessions bound before the lock stay open until they close (the directory offers no standard way to end another client's connection)";

/** The first items, then how many more. */
function listed(items: readonly string[]): string {
  const shown = items.slice(0, NAMES_IN_DETAIL).join(', ');
  return items.length > NAMES_IN_DETAIL ? `${shown} and ${items.length - NAMES_IN_DETAIL} more` : shown;
}

/** Quoted, because DNs contain commas. */
function names(list: readonly string[]): string {
  return listed(list.map((name) => `"${name}"`));
}

function accounts(count: number): string {
  return `${count} account${count === 1 ? '' : 's'}`;
}

/** One account the directory refused to change, with why. */
interface Refusal extends LdapFailure {
  dn: string;
}

/** Permanent if any refusal is permanent, else retriable. */
function outcomeOf(refusals: readonly Refusal[]): LdapFailure['outcome'] {
  return refusals.some((refusal) => refusal.outcome === 'failed-permanent') ? 'failed-permanent' : 'failed-retriable';
}

function describeRefusals(refusals: readonly Refusal[]): string {
  return listed(refusals.map((refusal) => `"${refusal.dn}": ${refusal.detail}`));
}

/**
 * Revokes access to an LDAP directory by locking its accounts with the password policy
 * (`pwdAccountLockedTime: 000001010000Z`, locked until an administrator unlocks), and restores it by
 * unlocking exactly the accounts it locked.
 *
 * Never touched: exempt principals (by the value of the principal attribute or by full DN), the
 * adapter's own bind DN, and accounts that were locked until an administrator unlocks before the
 * revoke. Before locking an account the enforcer records it in the journal, so that after a crash
 * mid-revoke (when those accounts already look locked and would not be picked again) restore still
 * unlocks them. Every write is conditional on the lock the enforcer read, so a concurrent change is
 * never overwritten.
 */
export class LdapAccountEnforcer implements AccessEnforcer<LdapSystemConfig> {
  readonly kind = 'ldap';

  constructor(private readonly connect: AccountRepositoryFactory = (system) => LdapAccountRepository.connect(system)) {}

  revoke(context: EnforcementContext<LdapSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.revokeWith(repository, context));
  }

  restore(context: EnforcementContext<LdapSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.restoreWith(repository, context));
  }

  inspect(context: InspectionContext<LdapSystemConfig>): Promise<InspectionResult> {
    return withTargetSession(
      () => this.connect(context.system),
      async (repository): Promise<InspectionResult> => {
        const unlocked = await this.accountsThatCanBind(repository, context);
        if (unlocked.length === 0) return { state: 'revoked', detail: `no non-exempt account can bind; ${RESIDUAL_SESSIONS}` };
        return {
          state: 'active',
          detail: `${accounts(unlocked.length)} can bind: ${names(unlocked.map((account) => account.dn))}`,
          principals: unlocked.map((account) => account.name ?? account.dn),
        };
      },
      (error) => ({ state: 'unknown', detail: classifyLdapFailure(error).detail }),
    );
  }

  private async revokeWith(
    repository: AccountRepository,
    context: EnforcementContext<LdapSystemConfig>,
  ): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, LdapAccountJournalSchema, { lockedAccounts: [] }).lockedAccounts;
    const targets = await this.accountsThatCanBind(repository, context);
    if (targets.length > 0) {
      await context.journal.write<LdapAccountJournal>({ lockedAccounts: this.withTargets(owed, targets) });
    }

    const locked: string[] = [];
    const vanished: string[] = [];
    const refusals: Refusal[] = [];
    for (const account of targets) {
      try {
        const changed = await repository.changeLock(account.dn, account.lockedTime, PERMANENT_LOCK_TIME);
        (changed ? locked : vanished).push(account.dn);
      } catch (error) {
        if (!isServerAnswer(error)) throw error;
        refusals.push({ dn: account.dn, ...classifyLdapFailure(error) });
      }
    }

    const detail = [locked.length > 0 ? `locked ${accounts(locked.length)}: ${names(locked)}` : 'no account left to lock'];
    if (vanished.length > 0) detail.push(`deleted meanwhile: ${names(vanished)}`);
    if (context.exemptPrincipals.length > 0) detail.push(`exempt: ${names(context.exemptPrincipals)}`);
    if (refusals.length > 0) detail.push(`could not lock ${describeRefusals(refusals)}`);
    detail.push(RESIDUAL_SESSIONS);
    return {
      outcome: refusals.length > 0 ? outcomeOf(refusals) : locked.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: locked.length,
      sessionsTerminated: 0,
    };
  }

  private async restoreWith(
    repository: AccountRepository,
    context: EnforcementContext<LdapSystemConfig>,
  ): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, LdapAccountJournalSchema, { lockedAccounts: [] }).lockedAccounts;
    if (owed.length === 0) {
      return { outcome: 'already-in-state', detail: 'nothing to unlock: no revoke by this adapter is outstanding', principalsChanged: 0 };
    }

    const unlocked: string[] = [];
    const missing: string[] = [];
    const refusals: Refusal[] = [];
    /** Accounts found unlocked already, given back, or gone: no longer owed. */
    const settled = new Set<string>();
    // After a partial restore the journal keeps only what is still owed: a later revoke merges the journal into
    // its own, and a later restore would otherwise unlock an account an administrator has locked since, on purpose.
    const stillOwed = () => owed.filter((entry) => !settled.has(entry.dn));
    try {
      for (const { dn, previousLockedTime } of owed) {
        const current = await repository.findEntry(dn);
        if (current === undefined) {
          missing.push(dn);
          settled.add(dn);
          continue;
        }
        // Unlocked meanwhile (by an administrator, or never locked before a crash): nothing owed.
        if (!isPermanentlyLocked(current)) {
          settled.add(dn);
          continue;
        }
        try {
          const changed = await repository.changeLock(dn, current.lockedTime, previousLockedTime);
          (changed ? unlocked : missing).push(dn);
          settled.add(dn);
        } catch (error) {
          if (!isServerAnswer(error)) throw error;
          refusals.push({ dn, ...classifyLdapFailure(error) });
        }
      }
    } catch (error) {
      if (unlocked.length > 0) await context.journal.write<LdapAccountJournal>({ lockedAccounts: stillOwed() });
      throw error;
    }

    const detail = [
      unlocked.length > 0 ? `unlocked ${accounts(unlocked.length)}: ${names(unlocked)}` : 'every locked account is unlocked already',
    ];
    if (missing.length > 0) detail.push(`no longer in the directory: ${names(missing)}`);
    if (refusals.length > 0) {
      // The journal keeps what is still owed: a later restore (a newer decision, or a restart) unlocks it.
      await context.journal.write<LdapAccountJournal>({ lockedAccounts: stillOwed() });
      detail.push(`could not unlock ${describeRefusals(refusals)}`);
      return { outcome: outcomeOf(refusals), detail: detail.join('; '), principalsChanged: unlocked.length };
    }
    await context.journal.clear();
    return {
      outcome: unlocked.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: unlocked.length,
    };
  }

  /** Matching accounts not locked until an administrator unlocks, except the exempt ones and the adapter's own. */
  private async accountsThatCanBind(
    repository: AccountRepository,
    context: InspectionContext<LdapSystemConfig>,
  ): Promise<DirectoryAccount[]> {
    const spared = await this.sparedDns(repository, context);
    return (await repository.listAccounts()).filter((account) => !spared.has(account.dn) && !isPermanentlyLocked(account));
  }

  /**
   * DNs, as the server spells them, of the exempt accounts and the adapter's own. Principals are
   * matched by the server: against the principal attribute with its matching rule, and as a DN by
   * reading the entry it names (so `UID=Ops, OU=People, ...` finds `uid=ops,ou=people,...`).
   */
  private async sparedDns(repository: AccountRepository, context: InspectionContext<LdapSystemConfig>): Promise<Set<string>> {
    const { bindDn } = context.system;
    const dnLike = context.exemptPrincipals.filter((principal) => principal.includes('='));
    const [named, ...entries] = await Promise.all([
      repository.findAccountsByPrincipal(context.exemptPrincipals),
      ...[bindDn, ...dnLike].map((dn) => repository.findEntry(dn)),
    ]);
    return new Set([bindDn, ...named, ...entries.flatMap((entry) => (entry ? [entry.dn] : []))]);
  }

  /** The journal's accounts, plus the targets it does not hold yet (an account keeps its first-recorded lockout). */
  private withTargets(owed: readonly LockedAccount[], targets: readonly DirectoryAccount[]): LockedAccount[] {
    const known = new Set(owed.map((account) => account.dn));
    const added = targets
      .filter((account) => !known.has(account.dn))
      .map(({ dn, lockedTime }) => (lockedTime === undefined ? { dn } : { dn, previousLockedTime: lockedTime }));
    return [...owed, ...added];
  }


  private withRepository(
    context: EnforcementContext<LdapSystemConfig>,
    work: (repository: AccountRepository) => Promise<EnforcementResult>,
  ): Promise<EnforcementResult> {
    return enforceWithTargetSession(() => this.connect(context.system), work, classifyLdapFailure);
  }
}
