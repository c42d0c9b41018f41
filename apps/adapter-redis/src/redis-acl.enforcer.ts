import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementResult,
  InspectionContext,
  InspectionResult,
} from '@portcullis/adapter-kit';
import { enforceWithTargetSession, readJournal, withTargetSession } from '@portcullis/adapter-kit';
import { z } from 'zod';
import { classifyRedisFailure } from './redis-failure';
import {
  RedisAclRepository,
  type AclPersistence,
  type AclRepository,
  type AclRepositoryFactory,
} from './redis-acl.repository';
import type { RedisSystemConfig } from './redis-system.config';

/** What the enforcer remembers per system: the users it switched off and still owes switching back on. */
export const RedisAclJournalSchema = z.object({ disabledUsers: z.array(z.string()) });
export type RedisAclJournal = z.infer<typeof RedisAclJournalSchema>;

const DEFAULT_USER = 'default';
const NAMES_IN_DETAIL = 20;

const PERSISTENCE_DETAIL: Record<AclPersistence, string> = {
  saved: 'saved to the aclfile (ACL SAVE)',
  'in-memory':
    'in memory only: the server has no aclfile, so a Redis restart reloads the users from its configuration (drift detection re-enforces)',
};

function names(list: readonly string[]): string {
  const shown = list.slice(0, NAMES_IN_DETAIL).join(', ');
  return list.length > NAMES_IN_DETAIL ? `${shown} and ${list.length - NAMES_IN_DETAIL} more` : shown;
}

function users(count: number): string {
  return `${count} ACL user${count === 1 ? '' : 's'}`;
}

function union(...lists: (readonly string[])[]): string[] {
  return [...new Set(lists.flat())];
}

/** A failure after the enforcement had already changed users: the detail must say so. */
class InterruptedEnforcementError extends Error {
  constructor(
    readonly progress: string,
    readonly principalsChanged: number,
    cause: unknown,
  ) {
    super(progress, { cause });
  }
}

/** The users of one server as a revoke sees them: those it manages, and what it leaves alone. */
interface AclScope {
  /** Managed users that are `on`. */
  enabled: string[];
  /** Names of all existing users. */
  existing: Set<string>;
  isManaged(name: string): boolean;
  /** Access a revoke does not take away, for the detail. */
  residual: string[];
}

/**
 * Revokes access to a Redis server by switching its ACL users `off` (`ACL SETUSER <user> off`) and
 * closing their connections (`CLIENT KILL USER`), and restores it by switching exactly those users back
 * `on`. Passwords and permissions are never touched.
 *
 * Never touched: exempt principals, the adapter's own user (`ACL WHOAMI`), and `default` unless
 * `includeDefaultUser`. Before switching a user off the enforcer records it in the journal, so that after
 * a crash mid-revoke (when those users already look `off` and would not be picked again) restore still
 * switches them back on. Users that were `off` before the revoke are never recorded and stay `off`.
 */
export class RedisAclEnforcer implements AccessEnforcer<RedisSystemConfig> {
  readonly kind = 'redis';

  constructor(private readonly connect: AclRepositoryFactory = (system) => RedisAclRepository.connect(system)) {}

  revoke(context: EnforcementContext<RedisSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.revokeWith(repository, context));
  }

  restore(context: EnforcementContext<RedisSystemConfig>): Promise<EnforcementResult> {
    return this.withRepository(context, (repository) => this.restoreWith(repository, context));
  }

  inspect(context: InspectionContext<RedisSystemConfig>): Promise<InspectionResult> {
    return withTargetSession(
      () => this.connect(context.system),
      async (repository): Promise<InspectionResult> => {
        const { enabled, residual } = await this.scope(repository, context);
        const residualDetail = residual.map((access) => `; ${access}`).join('');
        if (enabled.length === 0) return { state: 'revoked', detail: `no managed ACL user is on${residualDetail}` };
        return { state: 'active', detail: `${users(enabled.length)} on: ${names(enabled)}${residualDetail}`, principals: enabled };
      },
      (error) => ({ state: 'unknown', detail: classifyRedisFailure(error).detail }),
    );
  }

  private async revokeWith(repository: AclRepository, context: EnforcementContext<RedisSystemConfig>): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, RedisAclJournalSchema, { disabledUsers: [] }).disabledUsers;
    const scope = await this.scope(repository, context);
    const targets = scope.enabled;
    if (targets.length > 0) {
      await context.journal.write<RedisAclJournal>({ disabledUsers: union(owed, targets) });
    }

    const changed: string[] = [];
    let connectionsClosed = 0;
    let persistence: AclPersistence;
    try {
      for (const user of targets) {
        await repository.setEnabled(user, false);
        changed.push(user);
      }
      // Also the users of an earlier, interrupted revoke: they may still hold connections.
      const disconnect = union(owed, changed).filter((user) => scope.existing.has(user) && scope.isManaged(user));
      for (const user of disconnect) connectionsClosed += await repository.closeConnections(user);
      // Also when nothing changed: a crash may have come between switching users off and saving.
      persistence = await repository.persist();
    } catch (error) {
      if (changed.length === 0) throw error;
      throw new InterruptedEnforcementError(`switched off ${users(changed.length)} (${names(changed)}) before that`, changed.length, error);
    }

    const detail = [
      changed.length > 0 ? `switched off ${users(changed.length)} (${names(changed)})` : 'no managed ACL user left to switch off',
      `${connectionsClosed} connection${connectionsClosed === 1 ? '' : 's'} closed`,
    ];
    if (context.exemptPrincipals.length > 0) detail.push(`exempt: ${names(context.exemptPrincipals)}`);
    detail.push(...scope.residual, PERSISTENCE_DETAIL[persistence]);
    return {
      outcome: changed.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: changed.length,
      sessionsTerminated: connectionsClosed,
    };
  }

  private async restoreWith(repository: AclRepository, context: EnforcementContext<RedisSystemConfig>): Promise<EnforcementResult> {
    const owed = readJournal(context.journal, RedisAclJournalSchema, { disabledUsers: [] }).disabledUsers;
    if (owed.length === 0) {
      return { outcome: 'already-in-state', detail: 'no ACL user to switch back on: no revoke by this adapter is outstanding', principalsChanged: 0 };
    }
    const found = await repository.findUsers(owed);
    const existing = new Set(found.map((user) => user.name));
    const deleted = owed.filter((user) => !existing.has(user));

    const changed: string[] = [];
    let persistence: AclPersistence;
    try {
      for (const { name } of found.filter((user) => !user.enabled)) {
        await repository.setEnabled(name, true);
        changed.push(name);
      }
      persistence = await repository.persist();
    } catch (error) {
      if (changed.length === 0) throw error;
      throw new InterruptedEnforcementError(`switched ${users(changed.length)} back on (${names(changed)}) before that`, changed.length, error);
    }
    // Only once the users are on and saved: until then a retry still knows whom it owes.
    await context.journal.clear();

    const detail = [
      changed.length > 0 ? `switched ${users(changed.length)} back on (${names(changed)})` : 'every revoked ACL user is on again already',
    ];
    if (deleted.length > 0) detail.push(`deleted meanwhile: ${names(deleted)}`);
    detail.push(PERSISTENCE_DETAIL[persistence]);
    return {
      outcome: changed.length > 0 ? 'applied' : 'already-in-state',
      detail: detail.join('; '),
      principalsChanged: changed.length,
    };
  }

  private async scope(repository: AclRepository, context: InspectionContext<RedisSystemConfig>): Promise<AclScope> {
    const [ownUser, listing] = await Promise.all([repository.ownUser(), repository.listUsers()]);
    const exempt = new Set(context.exemptPrincipals);
    const { includeDefaultUser } = context.system;
    const isManaged = (name: string): boolean =>
      name !== ownUser && !exempt.has(name) && (includeDefaultUser || name !== DEFAULT_USER);

    const residual: string[] = [];
    const defaultUser = listing.users.find((user) => user.name === DEFAULT_USER);
    if (defaultUser?.enabled && !includeDefaultUser && ownUser !== DEFAULT_USER && !exempt.has(DEFAULT_USER)) {
      residual.push('residual access: the default user stays on (includeDefaultUser is false)');
    }
    if (listing.undecodableNames > 0) {
      residual.push(`residual access: ${users(listing.undecodableNames)} not managed (name not valid UTF-8)`);
    }
    return {
      enabled: listing.users.filter((user) => user.enabled && isManaged(user.name)).map((user) => user.name),
      existing: new Set(listing.users.map((user) => user.name)),
      isManaged,
      residual,
    };
  }


  private withRepository(
    context: EnforcementContext<RedisSystemConfig>,
    work: (repository: AclRepository) => Promise<EnforcementResult>,
  ): Promise<EnforcementResult> {
    return enforceWithTargetSession(() => this.connect(context.system), work, (error) => {
      if (error instanceof InterruptedEnforcementError) {
        const failure = classifyRedisFailure(error.cause);
        return { ...failure, detail: `${failure.detail}; ${error.progress}`, principalsChanged: error.principalsChanged };
      }
      return classifyRedisFailure(error);
    });
  }
}
