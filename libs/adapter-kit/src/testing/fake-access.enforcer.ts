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

export interface FakeInspectionCall {
  systemId: string;
  exemptPrincipals: readonly string[];
  at: number;
}

interface Hold {
  reached: Promise<void>;
  release: () => void;
}

type Operation = 'revoke' | 'restore' | 'inspect';

/**
 * An in-memory target per system. By default `revoke`/`restore` flip the target and report `applied`, or
 * `already-in-state` when it is there already, and `inspect` reports the target's state; setting
 * `targets` by hand changes the target out of band. `respondWith` scripts the next enforcement results of
 * a system, `respondToInspectWith` its next inspection results, and `hold` parks its next call of any kind
 * until released (a slow target). Calls of one system that run at the same time land in `overlaps`.
 */
export class FakeAccessEnforcer implements AccessEnforcer<FakeSystemConfig> {
  readonly kind = 'fake';
  readonly calls: FakeEnforcementCall[] = [];
  readonly inspections: FakeInspectionCall[] = [];
  readonly targets = new Map<string, AccessState>();
  /** `"<call> during <call>"` for every call that started while another call for the same system ran. */
  readonly overlaps: string[] = [];
  private readonly scripted = new Map<string, EnforcementResult[]>();
  private readonly scriptedInspections = new Map<string, InspectionResult[]>();
  private readonly holds = new Map<string, { entered: () => void; released: Promise<void> }>();
  /** Per system, the calls running right now. */
  private readonly running = new Map<string, Operation[]>();

  respondWith(systemId: string, ...results: EnforcementResult[]): void {
    this.scripted.set(systemId, [...(this.scripted.get(systemId) ?? []), ...results]);
  }

  respondToInspectWith(systemId: string, ...results: InspectionResult[]): void {
    this.scriptedInspections.set(systemId, [...(this.scriptedInspections.get(systemId) ?? []), ...results]);
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

  inspect(context: InspectionContext<FakeSystemConfig>): Promise<InspectionResult> {
    const { systemId, exemptPrincipals } = context;
    return this.exclusively(systemId, 'inspect', async () => {
      this.inspections.push({ systemId, exemptPrincipals, at: Date.now() });
      await this.waitIfHeld(systemId);
      const scripted = this.scriptedInspections.get(systemId)?.shift();
      if (scripted) return scripted;
      const state = this.targets.get(systemId) ?? 'active';
      return { state, detail: `fake target is ${state}` };
    });
  }

  private enforce(
    action: 'revoke' | 'restore',
    state: AccessState,
    context: EnforcementContext<FakeSystemConfig>,
  ): Promise<EnforcementResult> {
    const { systemId, generation, commandId, exemptPrincipals } = context;
    return this.exclusively(systemId, action, async () => {
      this.calls.push({ action, systemId, generation, commandId, exemptPrincipals, at: Date.now() });
      await this.waitIfHeld(systemId);
      const scripted = this.scripted.get(systemId)?.shift();
      if (scripted) return scripted;
      if ((this.targets.get(systemId) ?? 'active') === state) {
        return { outcome: 'already-in-state', detail: `fake target already ${state}` };
      }
      this.targets.set(systemId, state);
      return { outcome: 'applied', detail: `fake target now ${state}`, principalsChanged: 1, sessionsTerminated: 0 };
    });
  }

  private async waitIfHeld(systemId: string): Promise<void> {
    const hold = this.holds.get(systemId);
    if (!hold) return;
    this.holds.delete(systemId);
    hold.entered();
    await hold.released;
  }

  /** Runs one call, noting it in `overlaps` if another call for the same system is still running. */
  private async exclusively<T>(systemId: string, operation: Operation, call: () => Promise<T>): Promise<T> {
    const running = this.running.get(systemId) ?? [];
    this.running.set(systemId, running);
    for (const other of running) this.overlaps.push(`${operation} during ${other}`);
    running.push(operation);
    try {
      return await call();
    } finally {
      running.splice(running.indexOf(operation), 1);
    }
  }
}
