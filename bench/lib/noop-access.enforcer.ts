import type {
  AccessEnforcer,
  EnforcementContext,
  EnforcementResult,
  InspectionContext,
  InspectionResult,
} from '@portcullis/adapter-kit';
import { z } from 'zod';

/** Systems of kind `noop` need no settings. */
export const NoopSystemConfigSchema = z.object({});
export type NoopSystemConfig = z.output<typeof NoopSystemConfigSchema>;

/**
 * An enforcer whose target call does nothing: it only remembers the state it was asked for, so that
 * `inspect` (verification of revoked systems) agrees. Everything around it is the real adapter kit:
 * Kafka transport, durable state with fsync, reconciliation, two-stage acknowledgements, heartbeats.
 */
export class NoopAccessEnforcer implements AccessEnforcer<NoopSystemConfig> {
  readonly kind = 'noop';
  private readonly states = new Map<string, 'active' | 'revoked'>();

  async revoke(context: EnforcementContext<NoopSystemConfig>): Promise<EnforcementResult> {
    return this.set(context.systemId, 'revoked');
  }

  async restore(context: EnforcementContext<NoopSystemConfig>): Promise<EnforcementResult> {
    return this.set(context.systemId, 'active');
  }

  async inspect(context: InspectionContext<NoopSystemConfig>): Promise<InspectionResult> {
    const state = this.states.get(context.systemId) ?? 'active';
    return { state, detail: `no-op target is ${state}` };
  }

  private set(systemId: string, state: 'active' | 'revoked'): EnforcementResult {
    const before = this.states.get(systemId) ?? 'active';
    this.states.set(systemId, state);
    return before === state
      ? { outcome: 'already-in-state', detail: `no-op target already ${state}`, principalsChanged: 0 }
      : { outcome: 'applied', detail: `no-op target set ${state}`, principalsChanged: 0, sessionsTerminated: 0 };
  }
}
