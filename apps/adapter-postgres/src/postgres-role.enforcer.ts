import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementResult,
  InspectionContext,
  InspectionResult,
} from '@portcullis/adapter-kit';
import { describeError, enforceWithTargetSession, readJournal, withTargetSession } from '@portcullis/adapter-kit';
import { z } from 'zod';
import { classifyPostgresFailure } from './postgres-failure';
import {
  PostgresRoleRepository,
  type LoginRole,
  type RoleRepository,
  type RoleRepositoryFactory,
} from './postgres-role.repository';
import type { PostgresSystemConfig } from './postgres-system.config';

/** What the enforcer remembers per system: the roles whose LOGIN it took and still owes back. */
export const PostgresRoleJournalSchema = z.object({ revokedRoles: z.array(z.string()) });
export type PostgresRoleJournal = z.infer<typeof PostgresRoleJournalSchema>;

const NAMES_IN_DETAIL = 20;

function names(list: readonly string[]): string {
  const shown = list.slice(0, NAMES_IN_DETAIL).join(', ');
  return list.length > NAMES_IN_DETAIL ? `${shown} and ${list.length - NAMES_IN_DETAIL} more` : shown;
}

function roles(count: number): string {
  return `${count} role${count === 1 ? '' : 's'}`;
}

function union(...lists: (readonly string[])[]): string[] {
  return [...new Set(lists.flat())];
}

/** A per-role failure the enforcer can report and move past (a missing privilege), unlike a lost connection. */
function isPermanent(error: unknown): boolean {
  return classifyPostgresFailure(error).outcome === 'failed-permanent';
}

/**
 * Revokes access to a PostgreSQL server by taking LOGIN from its roles and ending their sessions, and
 * restores it by giving LOGIN back to exactly the roles it took it from.
 *
 * Never touched: exempt principals, the adapter's own role, and superusers unless `revokeSuperusers`.
 * Before changing a role the enforcer records it in the journal, so that after a crash mid-revoke (when
 * those roles already look NOLOGIN and would not be picked again) restore still gives them back.
 */
export class PostgresRoleEnforcer implements AccessEnforcer<PostgresSystemConfig> {
  readonly kind = 'postgres';

  constructor(private readonly connect: RoleRepositoryFactory = (system) => PostgresRoleRepository.connect(system)) {}

  revoke(context: EnforcementContext<PostgresSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.revokeWith(repository, context));
  }

  restore(context: EnforcementContext<PostgresSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.restoreWith(repository, context));
  }

  inspect(context: InspectionContext<PostgresSystemConfig>): Promise<InspectionResult> {
    return withTargetSession(
      () => this.connect(context.system),
      async (repository): Promise<InspectionResult> => {
        const { enforceable, residualSuperusers } = this.partition(await repository.loginRoles(), context);
        const residual = residualSuperusers.length > 0 ? `; superusers keep LOGIN: ${names(residualSuperusers)}` : '';
        if (enforceable.length === 0) return { state: 'revoked', detail: `no non-exempt role can log in${residual}` };
        const canLogin = enforceable.map((role) => role.name);
        return {
          state: 'active',
          detail: `${roles(canLogin.length)} can log in: ${names(canLogin)}${residual}`,
          principals: canLogin,
        };
      },
      (error) => ({ state: 'unknown', detail: classifyPostgresFailure(error).detail }),
    );
  }

  private async revokeWith(
    repository: RoleRepository,
    context: EnforcementContext<PostgresSystemConfig>,
  ): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, PostgresRoleJournalSchema, { revokedRoles: [] }).revokedRoles;
    const { enforceable, residualSuperusers } = this.partition(await repository.loginRoles(), context);
    const targets = enforceable.map((role) => role.name);
    if (targets.length > 0) {
      await context.journal.write<PostgresRoleJournal>({ revokedRoles: union(owed, targets) });
    }

    const changed: string[] = [];
    const refused: string[] = [];
    for (const role of targets) {
      try {
        await repository.setLogin(role, false);
        changed.push(role);
      } catch (error) {
        if (!isPermanent(error)) throw error;
        refused.push(`${role}: ${describeError(error)}`);
      }
    }
    const exempt = new Set(context.exemptPrincipals);
    const sessions = await repository.terminateSessions(union(owed, changed).filter((role) => !exempt.has(role)));

    const detail = [
      changed.length > 0 ? `LOGIN removed from ${roles(changed.length)} (${names(changed)})` : 'no role left to take LOGIN from',
      `${sessions.terminated} session${sessions.terminated === 1 ? '' : 's'} terminated`,
    ];
    if (context.exemptPrincipals.length > 0) detail.push(`exempt: ${names(context.exemptPrincipals)}`);
    if (residualSuperusers.length > 0) {
      detail.push(`residual access: superusers keep LOGIN (${names(residualSuperusers)})`);
    }
    if (refused.length > 0) detail.push(`could not remove LOGIN from ${names(refused)}`);
    if (sessions.refused.length > 0) detail.push(`could not end sessions ${names(sessions.refused)}`);

    const failed = refused.length > 0 || sessions.refused.length > 0;
    return {
      outcome: failed ? 'failed-permanent' : changed.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: changed.length,
      sessionsTerminated: sessions.terminated,
    };
  }

  private async restoreWith(
    repository: RoleRepository,
    context: EnforcementContext<PostgresSystemConfig>,
  ): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, PostgresRoleJournalSchema, { revokedRoles: [] }).revokedRoles;
    if (owed.length === 0) {
      return { outcome: 'already-in-state', detail: 'no LOGIN to give back: no revoke by this adapter is outstanding', principalsChanged: 0 };
    }
    const states = await repository.loginStates(owed);
    const existing = new Set(states.map((state) => state.name));
    const dropped = owed.filter((role) => !existing.has(role));

    const changed: string[] = [];
    const refused: string[] = [];
    const refusedRoles: string[] = [];
    // Roles given back (or found able to log in, or dropped) are no longer owed. After a partial restore the
    // journal keeps only the rest: a later revoke merges the journal into its own, and a later restore would
    // otherwise give LOGIN back to a role an administrator has taken it from since, on purpose.
    const stillOwed = () => states.filter((state) => !state.canLogin && !changed.includes(state.name)).map((state) => state.name);
    for (const { name } of states.filter((state) => !state.canLogin)) {
      try {
        await repository.setLogin(name, true);
        changed.push(name);
      } catch (error) {
        if (!isPermanent(error)) {
          if (changed.length > 0) await context.journal.write<PostgresRoleJournal>({ revokedRoles: stillOwed() });
          throw error;
        }
        refused.push(`${name}: ${describeError(error)}`);
        refusedRoles.push(name);
      }
    }

    const detail = [
      changed.length > 0 ? `LOGIN given back to ${roles(changed.length)} (${names(changed)})` : 'every revoked role can log in again already',
    ];
    if (dropped.length > 0) detail.push(`dropped meanwhile: ${names(dropped)}`);
    if (refused.length > 0) {
      // The journal keeps what is still owed: a later restore (a newer decision, or a restart) gives it back.
      await context.journal.write<PostgresRoleJournal>({ revokedRoles: refusedRoles });
      detail.push(`could not give LOGIN back to ${names(refused)}`);
      return { outcome: 'failed-permanent', detail: detail.join('; '), principalsChanged: changed.length };
    }
    await context.journal.clear();
    return {
      outcome: changed.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: changed.length,
    };
  }

  /** Splits login roles into those a revoke takes LOGIN from and superusers it leaves alone. */
  private partition(
    loginRoles: readonly LoginRole[],
    context: InspectionContext<PostgresSystemConfig>,
  ): { enforceable: LoginRole[]; residualSuperusers: string[] } {
    const exempt = new Set(context.exemptPrincipals);
    const candidates = loginRoles.filter((role) => !exempt.has(role.name));
    const spareSuperusers = !context.system.revokeSuperusers;
    return {
      enforceable: candidates.filter((role) => !(role.superuser && spareSuperusers)),
      residualSuperusers: candidates.filter((role) => role.superuser && spareSuperusers).map((role) => role.name),
    };
  }


  private withRepository(
    context: EnforcementContext<PostgresSystemConfig>,
    work: (repository: RoleRepository) => Promise<EnforcementResult>,
  ): Promise<EnforcementResult> {
    return enforceWithTargetSession(() => this.connect(context.system), work, classifyPostgresFailure);
  }
}
