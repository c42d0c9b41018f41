import { Inject, Injectable } from '@nestjs/common';
import {
  encodeSignedMessage,
  envelopeHeader,
  SYSTEM_ACCESS_CHANGED,
  SystemAccessChangedV1Schema,
  Topics,
  type AccessState,
  type SystemAccessChangedV1,
} from '@portcullis/contracts';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import type { CommandEntity, SystemEntity } from '../database/entities';
import type { OutboxMessage } from '../outbox/outbox.writer';

export const POLICY_SERVICE_PRODUCER = 'policy-service';

/** What a desired-state message says about one system. */
export interface SystemDecision {
  command: Pick<CommandEntity, 'id' | 'groupId' | 'action' | 'reason' | 'incidentRef' | 'requestedBy' | 'acknowledgeBy'>;
  system: Pick<SystemEntity, 'id' | 'kind' | 'adapterId'>;
  generation: number;
  desiredState: AccessState;
  /** Break-glass principals valid now: adapters never disable them. */
  exemptPrincipals: readonly string[];
}

/**
 * Builds the `system-access.changed` messages the policy service publishes and signs them with its key,
 * with a validity (`expiresAt`) of `commandTtlSeconds`. The only place that signs decisions: both a new
 * decision and the re-issue of a current one go through it.
 */
@Injectable()
export class SystemAccessMessageFactory {
  constructor(@Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig) {}

  build(decision: SystemDecision, now = new Date()): OutboxMessage {
    const { command, system } = decision;
    const message: SystemAccessChangedV1 = {
      ...envelopeHeader(POLICY_SERVICE_PRODUCER, now),
      type: SYSTEM_ACCESS_CHANGED,
      version: 1,
      commandId: command.id,
      generation: decision.generation,
      data: {
        systemId: system.id,
        systemKind: system.kind,
        adapterId: system.adapterId,
        desiredState: decision.desiredState,
        groupId: command.groupId,
        action: command.action,
        reason: command.reason,
        incidentRef: command.incidentRef ?? undefined,
        requestedBy: command.requestedBy,
        exemptPrincipals: [...decision.exemptPrincipals],
        acknowledgeBy: command.acknowledgeBy.toISOString(),
        expiresAt: new Date(now.getTime() + this.config.commandTtlSeconds * 1000).toISOString(),
      },
    };
    return {
      topic: Topics.systemAccess,
      key: system.id,
      // Routed to its adapter's partition: each adapter reads only the partition of its own systems.
      partitionKey: system.adapterId,
      value: encodeSignedMessage(SystemAccessChangedV1Schema, message, this.config.signing),
    };
  }
}
