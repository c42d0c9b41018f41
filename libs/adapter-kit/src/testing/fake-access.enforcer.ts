import type { AccessState } from '@portcullis/contracts';
import { z } from 'zod';
import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementResult,
  InspectionContext,
  InspectionResult,
} from '../access-enforcer';

export const FakeSystemConfigSchema = z.object({ label: z.string().optional() });
export type FakeSystemConfig = z.infer<typeof FakeSystemConfigSchema>;

export interface FakeEnforcementCall {
  action: 'revoke' | 'restore';
  systemId: string;
  generation: number;
  commandId: string;
  exemptPrincipals: readonly string[];
  at: number;
}

interface Hold {
  reached: Promise<void>;
  release: () => void;
}

/**
 * An in-memory target per system. By default `revoke`/`restore` flip the target and report `applied`, or
 * `already-in-state` when it is there already; `respondWith` scripts the next results of a system and
 * `hold` parks its next call until released (a slow enforcement).
 */
export class FakeAccessEnforcer implements AccessEnforcer<FakeSystemConfig> {
  readonly kind = 'fake';
  readonly calls: FakeEnforcementCall[] = [];
  readonly targets = new Map<string, AccessState>();
  private readonly scripted = new Map<string, EnforcementResult[]>();
  private readonly holds = new Map<string, { entered: () => void; released: Promise<void> }>();

  respondWith(systemId: string, ...results: EnforcementResult[]): void {
    this.scripted.set(systemId, [...(this.scripted.get(systemId) ?? []), ...results]);
  }

  /** The next call for `systemId` waits until `release()`; `reached` resolves when it has started. */
  hold(systemId: string): Hold {
    let entered!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (entered = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.holds.set(systemId, { entered, released });
    return { reached, release };
  }

  callsFor(systemId: string): FakeEnforcementCall[] {
    return this.calls.filter((call) => call.systemId === systemId);
  }

  revoke(context: EnforcementContext<FakeSystemConfig>): Promise<EnforcementResult> {
    return this.enforce('revoke', 'revoked', context);
  }

  restore(context: EnforcementContext<FakeSystemConfig>): Promise<EnforcementResult> {
    return this.enforce('restore', 'active', context);
  }

  async inspect(context: InspectionContext<FakeSystemConfig>): Promise<InspectionResult> {
    const state = this.targets.get(context.systemId) ?? 'active';
    return { state, detail: `fake target is ${state}` };
  }

  private async enforce(
    action: 'revoke' | 'restore',
    state: AccessState,
    context: EnforcementContext<FakeSystemConfig>,
  ): Promise<EnforcementResult> {
    const { systemId, generation, commandId, exemptPrincipals } = context;
    this.calls.push({ action, systemId, generation, commandId, exemptPrincipals, at: Date.now() });
    const hold = this.holds.get(systemId);
    if (hold) {
      this.holds.delete(systemId);
      hold.entered();
      await hold.released;
    }
    const scripted = this.scripted.get(systemId)?.shift();
    if (scripted) return scripted;
    if ((this.targets.get(systemId) ?? 'active') === state) {
      return { outcome: 'already-in-state', detail: `fake target already ${state}` };
    }
    this.targets.set(systemId, state);
    return { outcome: 'applied', detail: `fake target now ${state}`, principalsChanged: 1, sessionsTerminated: 0 };
  }
}
