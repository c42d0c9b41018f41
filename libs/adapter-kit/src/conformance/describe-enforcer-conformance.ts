/// <reference types="jest" />
import { randomUUID } from 'node:crypto';
import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementJournal,
  EnforcementOutcome,
  EnforcementResult,
  InspectionResult,
} from '../access-enforcer';
import { JsonLogger } from '../logging/json.logger';
import { InMemoryEnforcementJournal } from '../testing/in-memory-enforcement.journal';
import type { TargetFixture, TargetSession } from './target-fixture';

/** Principal labels that break naive quoting in SQL, LDAP DNs and filters, Redis ACL rules and shells. */
export const DEFAULT_HOSTILE_LABELS: readonly string[] = [
  `it's`,
  `say "hi"`,
  'semi;colon',
  'with space',
  'ünïcødé ✓',
  'back\\slash',
  'star*(paren)',
  'dn,b=c+d<e>#f',
  '$x|y&z%~`',
  `'; select 1; --`,
];

const SYSTEM_ID = 'conformance';
const ignore = (): void => undefined;

interface EnforcementCall {
  /** Exempt principals of the decision (the fixture's own are added). */
  exempt?: readonly string[];
  journal?: EnforcementJournal;
  /**
   * The same decision again, as the runtime does after a failure or a crash; otherwise a new decision
   * (the next generation).
   */
  again?: boolean;
}

async function until(probe: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function expectOutcome(result: EnforcementResult, outcome: EnforcementOutcome): void {
  // The whole result, so that a failure shows the enforcer's detail.
  expect(result).toMatchObject({ outcome });
}

/**
 * Registers the scenarios every enforcer must pass against its real target, through `fixture`:
 *
 * - revoke takes access away, restore gives back exactly the prior state;
 * - a principal disabled before the revoke stays disabled after the restore;
 * - an exempt principal and its session are never touched;
 * - open sessions are ended (or, where the target cannot, reported as residual access);
 * - a repeated revoke or restore changes nothing;
 * - an unreachable target is `failed-retriable` and `unknown`, and the retry applies once it is back;
 * - access re-enabled out of band shows as `active`, a second revoke takes it again, and restore still
 *   gives back exactly the prior state;
 * - intent is journalled before the target changes, and a run cut short after the journal write is
 *   completed by a re-run;
 * - hostile principal names are names, never syntax.
 *
 * Test-only: call it at the top level of an integration spec (`*.int-spec.ts`).
 */
export function describeEnforcerConformance<TSystem>(name: string, fixture: TargetFixture<TSystem>): void {
  describe(`${name}: enforcer conformance`, () => {
    const logger = new JsonLogger({ write: ignore });
    const sessions: TargetSession[] = [];
    let enforcer: AccessEnforcer<TSystem>;
    let journal: InMemoryEnforcementJournal;
    let generation: number;
    let commandId: string;
    let down = false;

    function context(call: EnforcementCall): EnforcementContext<TSystem> {
      if (!call.again) {
        generation += 1;
        commandId = randomUUID();
      }
      return {
        systemId: SYSTEM_ID,
        system: fixture.system(),
        exemptPrincipals: [...(call.exempt ?? []), ...(fixture.exemptPrincipals ?? [])],
        journal: call.journal ?? journal,
        commandId,
        generation,
        logger,
      };
    }

    const revoke = (call: EnforcementCall = {}): Promise<EnforcementResult> => enforcer.revoke(context(call));
    const restore = (call: EnforcementCall = {}): Promise<EnforcementResult> => enforcer.restore(context(call));

    function inspect(exempt: readonly string[] = []): Promise<InspectionResult> {
      return enforcer.inspect({
        systemId: SYSTEM_ID,
        system: fixture.system(),
        exemptPrincipals: [...exempt, ...(fixture.exemptPrincipals ?? [])],
        logger,
      });
    }

    /** Who can authenticate, one principal after another, as a map (a failure names the principal). */
    async function expectAccess(expected: Record<string, boolean>): Promise<void> {
      const actual: Record<string, boolean> = {};
      for (const principal of Object.keys(expected)) actual[principal] = await fixture.canAuthenticate(principal);
      expect(actual).toEqual(expected);
    }

    async function openSession(principal: string): Promise<TargetSession> {
      const session = await fixture.openSession(principal);
      sessions.push(session);
      expect(await session.isOpen()).toBe(true);
      return session;
    }

    async function takeDown(): Promise<void> {
      down = true;
      await fixture.takeDown();
    }

    async function bringUp(): Promise<void> {
      await fixture.bringUp();
      down = false;
    }

    beforeAll(async () => {
      await fixture.setUp?.();
      enforcer = fixture.enforcer();
      expect(enforcer.kind).toBe(fixture.kind);
    });

    afterAll(() => fixture.cleanup());

    beforeEach(() => {
      journal = new InMemoryEnforcementJournal();
      generation = 0;
    });

    afterEach(async () => {
      // Whatever happened in the scenario: the target up, sessions closed and access given back, so that
      // the next scenario and other specs find the target as they left it.
      if (down) await bringUp();
      await Promise.all(sessions.splice(0).map((session) => session.close().catch(ignore)));
      if (journal.value !== undefined) await restore();
    });

    it('revoke takes access away; restore gives back exactly the prior state and clears the journal', async () => {
      const alice = await fixture.createPrincipal('revoke-alice');
      const bob = await fixture.createPrincipal('revoke-bob');
      await expectAccess({ [alice]: true, [bob]: true });

      const revoked = await revoke();

      expectOutcome(revoked, 'applied');
      expect(revoked.principalsChanged).toBeGreaterThanOrEqual(2);
      await expectAccess({ [alice]: false, [bob]: false });
      expect(journal.value).toBeDefined();
      expect(await inspect()).toMatchObject({ state: 'revoked' });

      const restored = await restore();

      expectOutcome(restored, 'applied');
      expect(restored.principalsChanged).toBeGreaterThanOrEqual(2);
      await expectAccess({ [alice]: true, [bob]: true });
      expect(journal.value).toBeUndefined();
      expect(await inspect()).toMatchObject({ state: 'active' });
    });

    it('a principal disabled before the revoke stays disabled after the restore', async () => {
      const dormant = await fixture.createPrincipal('dormant', { enabled: false });
      const peer = await fixture.createPrincipal('dormant-peer');
      await expectAccess({ [dormant]: false, [peer]: true });

      expectOutcome(await revoke(), 'applied');
      await expectAccess({ [dormant]: false, [peer]: false });

      expectOutcome(await restore(), 'applied');
      await expectAccess({ [dormant]: false, [peer]: true });
    });

    it('never touches an exempt principal or its open session', async () => {
      const exempt = await fixture.createPrincipal('exempt');
      const peer = await fixture.createPrincipal('exempt-peer');
      const session = await openSession(exempt);

      expectOutcome(await revoke({ exempt: [exempt] }), 'applied');
      await expectAccess({ [exempt]: true, [peer]: false });
      expect(await session.isOpen()).toBe(true);
      expect(await inspect([exempt])).toMatchObject({ state: 'revoked' });

      expectOutcome(await restore({ exempt: [exempt] }), 'applied');
      await expectAccess({ [exempt]: true, [peer]: true });
      expect(await session.isOpen()).toBe(true);
    });

    if (fixture.endsSessions) {
      it('ends the open sessions of the principals it revokes', async () => {
        const user = await fixture.createPrincipal('session');
        const session = await openSession(user);

        const revoked = await revoke();

        expectOutcome(revoked, 'applied');
        expect(revoked.sessionsTerminated).toBeGreaterThanOrEqual(1);
        await until(async () => expect(await session.isOpen()).toBe(false));
        await expectAccess({ [user]: false });

        expectOutcome(await restore(), 'applied');
        await expectAccess({ [user]: true });
      });
    } else {
      it('reports the open sessions it cannot end as residual access', async () => {
        const user = await fixture.createPrincipal('session');
        await openSession(user);

        const revoked = await revoke();

        expectOutcome(revoked, 'applied');
        expect(revoked.sessionsTerminated ?? 0).toBe(0);
        expect(revoked.detail).toMatch(/residual/i);
        expect(revoked.detail).toMatch(/session/i);
        await expectAccess({ [user]: false });

        expectOutcome(await restore(), 'applied');
        await expectAccess({ [user]: true });
      });
    }

    it('a repeated revoke or restore changes nothing, also when re-run for the same decision', async () => {
      const user = await fixture.createPrincipal('repeat');
      expectOutcome(await revoke(), 'applied');

      const repeated = await revoke();
      expectOutcome(repeated, 'already-in-state');
      expect(repeated.principalsChanged ?? 0).toBe(0);
      // As after a crash between the last change and the recorded outcome: still owed, nothing to change.
      expectOutcome(await revoke({ again: true }), 'already-in-state');
      await expectAccess({ [user]: false });

      expectOutcome(await restore(), 'applied');
      await expectAccess({ [user]: true });
      const restoredAgain = await restore();
      expectOutcome(restoredAgain, 'already-in-state');
      expect(restoredAgain.principalsChanged ?? 0).toBe(0);
      await expectAccess({ [user]: true });
    });

    it('reports an unreachable target as failed-retriable and unknown; once it is back, the retry applies', async () => {
      const user = await fixture.createPrincipal('outage');

      await takeDown();
      expectOutcome(await revoke(), 'failed-retriable');
      expect(await inspect()).toMatchObject({ state: 'unknown' });
      await bringUp();

      expectOutcome(await revoke({ again: true }), 'applied');
      await expectAccess({ [user]: false });
      expectOutcome(await restore(), 'applied');
      await expectAccess({ [user]: true });
    });

    it('after access was re-enabled out of band: inspect says active, revoking again takes it, restore gives back exactly the prior state', async () => {
      const reenabled = await fixture.createPrincipal('drift-reenabled');
      const peer = await fixture.createPrincipal('drift-peer');
      const dormant = await fixture.createPrincipal('drift-dormant', { enabled: false });
      expectOutcome(await revoke(), 'applied');

      await fixture.enableOutOfBand(reenabled);
      await expectAccess({ [reenabled]: true, [peer]: false, [dormant]: false });
      const drifted = await inspect();
      expect(drifted.state).toBe('active');
      // Naming the principals is optional; those named must include the re-enabled one.
      if (drifted.principals !== undefined) expect(drifted.principals).toContain(reenabled);

      // The runtime enforces the same decision again.
      const reenforced = await revoke({ again: true });
      expectOutcome(reenforced, 'applied');
      expect(reenforced.principalsChanged).toBeGreaterThanOrEqual(1);
      await expectAccess({ [reenabled]: false, [peer]: false, [dormant]: false });
      expect(await inspect()).toMatchObject({ state: 'revoked' });

      expectOutcome(await restore(), 'applied');
      await expectAccess({ [reenabled]: true, [peer]: true, [dormant]: false });
    });

    it('journals its intent before it changes the target; after a crash right after the journal write, a re-run and restore give back exactly the prior state', async () => {
      const user = await fixture.createPrincipal('crash');
      const dormant = await fixture.createPrincipal('crash-dormant', { enabled: false });
      let accessAtFirstWrite: boolean | undefined;
      const crashing: EnforcementJournal = {
        read: () => journal.read(),
        write: async (value) => {
          await journal.write(value);
          accessAtFirstWrite ??= await fixture.canAuthenticate(user);
          throw new Error('the adapter process died right after the journal write');
        },
        clear: () => journal.clear(),
      };

      const crashed = await revoke({ journal: crashing }).then(
        (result) => result.outcome,
        () => 'threw',
      );

      expect(['failed-retriable', 'threw']).toContain(crashed);
      expect(accessAtFirstWrite).toBe(true);
      expect(journal.value).toBeDefined();
      // Not durably journalled means not acted on.
      await expectAccess({ [user]: true, [dormant]: false });

      expectOutcome(await revoke({ again: true }), 'applied');
      await expectAccess({ [user]: false, [dormant]: false });
      expectOutcome(await restore(), 'applied');
      await expectAccess({ [user]: true, [dormant]: false });
    });

    it('completes with a re-run an enforcement that an outage cut short after the journal write', async () => {
      const user = await fixture.createPrincipal('cut');
      const dormant = await fixture.createPrincipal('cut-dormant', { enabled: false });
      const cutting: EnforcementJournal = {
        read: () => journal.read(),
        write: async (value) => {
          await journal.write(value);
          if (!down) await takeDown();
        },
        clear: () => journal.clear(),
      };

      expectOutcome(await revoke({ journal: cutting }), 'failed-retriable');
      await bringUp();

      expectOutcome(await revoke({ again: true }), 'applied');
      await expectAccess({ [user]: false, [dormant]: false });
      expectOutcome(await restore(), 'applied');
      await expectAccess({ [user]: true, [dormant]: false });
    });

    it('handles hostile principal names as names, never as syntax', async () => {
      const victim = await fixture.createPrincipal('victim', { enabled: false });
      // A name that, used as a pattern, would match its peer.
      const wildcard = await fixture.createPrincipal('wild*');
      const wildcardPeer = await fixture.createPrincipal('wild-peer');
      const hostile: string[] = [];
      for (const label of fixture.hostileLabels ?? DEFAULT_HOSTILE_LABELS) hostile.push(await fixture.createPrincipal(label));
      const exempt = [wildcard];
      const access = (hostileCan: boolean) =>
        Object.fromEntries([
          ...hostile.map((principal) => [principal, hostileCan]),
          [wildcard, true],
          [wildcardPeer, hostileCan],
          [victim, false],
        ]);
      await expectAccess(access(true));

      expectOutcome(await revoke({ exempt }), 'applied');
      await expectAccess(access(false));
      expect(await inspect(exempt)).toMatchObject({ state: 'revoked' });

      expectOutcome(await restore({ exempt }), 'applied');
      await expectAccess(access(true));
    });
  });
}
