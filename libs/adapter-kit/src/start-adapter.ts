import { randomBytes } from 'node:crypto';
import { createKafka, ReliableProducer } from '@portcullis/kafka';
import type { z } from 'zod';
import type { AccessEnforcer } from './access-enforcer';
import { AdapterConfigError } from './config/adapter-config.error';
import { parseAdapterConfig, type AdapterConfig, type AdapterConfigInput } from './config/adapter-config';
import type { AdapterLogger } from './logging/adapter-logger';
import { JsonLogger } from './logging/json.logger';
import type { AdapterEventPublisher } from './messaging/adapter-event.publisher';
import type { DesiredStateSource } from './messaging/desired-state.source';
import { KafkaAdapterEventPublisher } from './messaging/kafka-adapter-event.publisher';
import { KafkaDesiredStateSource } from './messaging/kafka-desired-state.source';
import { kafkaLogCreator } from './messaging/kafka-log-creator';
import type { AdapterIdentity } from './runtime/adapter-identity';
import { AdapterRuntime } from './runtime/adapter-runtime';
import type { RunningAdapter, StartableAdapter } from './runtime/running-adapter';
import { LogStructuredStateStore } from './state/log-structured-state.store';

/** How an adapter talks to the rest of Portcullis. Kafka unless replaced (unit tests replace it). */
export interface AdapterTransport {
  source: DesiredStateSource;
  publisher: AdapterEventPublisher;
}

export interface StartAdapterOptions<TSystem, TSystemInput = TSystem> {
  enforcer: AccessEnforcer<TSystem>;
  /** Validates each system's adapter-specific settings (`config.systems[id]`, minus `exemptPrincipals`). */
  systemConfigSchema: z.ZodType<TSystem, TSystemInput>;
  config: AdapterConfigInput<TSystemInput>;
  /** Default: JSON lines on stdout at `config.logLevel`. */
  logger?: AdapterLogger;
  transport?: AdapterTransport;
}

export interface ComposeAdapterOptions<TSystem> {
  enforcer: AccessEnforcer<TSystem>;
  config: AdapterConfig<TSystem>;
  logger?: AdapterLogger;
  transport?: AdapterTransport;
}

function kafkaTransport(config: AdapterConfig<unknown>, logger: AdapterLogger): AdapterTransport {
  const kafka = createKafka(config.kafka, { logCreator: kafkaLogCreator(logger) });
  return {
    source: new KafkaDesiredStateSource(kafka, config.adapterId, logger),
    publisher: new KafkaAdapterEventPublisher(new ReliableProducer(kafka), config.signingKey),
  };
}

/** Wires an adapter from a validated configuration without starting it (the Nest module starts it). */
export function composeAdapter<TSystem>(options: ComposeAdapterOptions<TSystem>): StartableAdapter {
  const { enforcer, config } = options;
  if (config.kind !== undefined && config.kind !== enforcer.kind) {
    throw new AdapterConfigError([`kind: configured as "${config.kind}" but the enforcer handles "${enforcer.kind}"`]);
  }
  const identity: AdapterIdentity = {
    adapterId: config.adapterId,
    kind: enforcer.kind,
    instanceId: `${config.adapterId}-${randomBytes(3).toString('hex')}`,
    startedAt: new Date(),
  };
  const logger = (options.logger ?? new JsonLogger({ level: config.logLevel })).child({ adapterId: config.adapterId });
  const transport = options.transport ?? kafkaTransport(config, logger);
  return new AdapterRuntime({
    identity,
    systems: config.systems,
    enforcer,
    store: new LogStructuredStateStore(config.stateDir),
    source: transport.source,
    publisher: transport.publisher,
    retry: config.retry,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    verifyIntervalMs: config.verifyIntervalMs,
    deliveredAckDelayMs: config.deliveredAckDelayMs,
    trustedKeys: config.trustedKeys,
    logger,
  });
}

/**
 * Validates the configuration and starts an adapter in this process; resolves once it consumes. For
 * integration tests and embedding; a deployed adapter's `main.ts` calls `bootstrapAdapter` instead.
 */
export async function startAdapter<TSystem, TSystemInput = TSystem>(
  options: StartAdapterOptions<TSystem, TSystemInput>,
): Promise<RunningAdapter> {
  const config = parseAdapterConfig(options.config, options.systemConfigSchema);
  const adapter = composeAdapter({ ...options, config });
  await adapter.start();
  return adapter;
}
