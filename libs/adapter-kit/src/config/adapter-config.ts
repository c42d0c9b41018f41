import {
  parsePrivateKey,
  parsePublicKey,
  PrincipalNameSchema,
  SLUG_PATTERN,
  SlugSchema,
  type PublicKeyLookup,
  type SigningKey,
} from '@portcullis/contracts';
import type { KeyObject } from 'node:crypto';
import { trustedCaCertificates, type KafkaConnectionConfig } from '@portcullis/kafka';
import { z } from 'zod';
import { LOG_LEVELS, type LogLevel } from '../logging/adapter-logger';
import { AdapterConfigError } from './adapter-config.error';

const KafkaConnectionSchema = z.object({
  brokers: z.array(z.string().min(1)).min(1),
  clientId: z.string().min(1).optional(),
  sasl: z
    .object({
      mechanism: z.enum(['scram-sha-256', 'scram-sha-512']),
      username: z.string().min(1),
      password: z.string(),
    })
    .optional(),
  /** `true`: TLS trusting the system's CAs; `{ ca }`: trusting only these CA certificates (PEM text or file path). */
  ssl: z.union([z.boolean(), z.object({ ca: z.string().min(1) }).strict()]).optional(),
});

const AdapterSettingsSchema = z
  .object({
    adapterId: SlugSchema,
    /** Optional: when present it must equal the enforcer's kind (guards against a mixed-up config file). */
    kind: SlugSchema.optional(),
    stateDir: z.string().min(1),
    heartbeatIntervalMs: z.number().int().min(100).default(5_000),
    /** How often each revoked system is inspected for access that came back out of band (drift). */
    verifyIntervalMs: z.number().int().min(1_000).default(30_000),
    /**
     * `delivered` is acknowledged only if the decision is not enforced (and acknowledged) within this
     * long: a quick enforcement is acknowledged once, as `enforced`. 0 acknowledges delivery at once.
     */
    deliveredAckDelayMs: z.number().int().min(0).max(60_000).default(200),
    retry: z
      .object({
        initialMs: z.number().int().positive().default(1_000),
        maxMs: z.number().int().positive().default(30_000),
      })
      .prefault({}),
    kafka: KafkaConnectionSchema.prefault({ brokers: ['127.0.0.1:9092'] }),
    /** Port of the `/health` endpoint; 0 disables HTTP. */
    httpPort: z.number().int().min(0).max(65_535).default(0),
    logLevel: z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]]).default('info'),
    /** The adapter's own Ed25519 key: it signs every acknowledgement, drift report, alert and heartbeat. */
    signingKey: z.object({
      keyId: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, { message: 'must be 1-100 characters of A-Z a-z 0-9 . _ -' }),
      /** PKCS#8 PEM text, or the path of a PEM file. */
      privateKey: z.string().min(1),
    }),
    /** The policy service's public keys, by key id (SPKI PEM text or file path): only decisions they sign are obeyed. */
    trustedKeys: z.record(z.string().min(1), z.string().min(1)).refine((keys) => Object.keys(keys).length > 0, {
      message: 'at least one trusted policy-service key is needed',
    }),
    systems: z.record(z.string(), z.unknown()).refine((systems) => Object.keys(systems).length > 0, {
      message: 'at least one system must be configured',
    }),
  })
  .refine((settings) => settings.retry.maxMs >= settings.retry.initialMs, {
    message: 'retry.maxMs must be at least retry.initialMs',
    path: ['retry', 'maxMs'],
  });

/** The part of every system's configuration that the runtime itself reads. */
const ServedSystemBaseSchema = z.object({
  /** Principals never touched on this system, in addition to those named in each decision. */
  exemptPrincipals: z.array(PrincipalNameSchema).max(1000).default([]),
});

/** One system an adapter serves, with its adapter-specific settings. */
export interface ServedSystem<TSystem> {
  systemId: string;
  exemptPrincipals: readonly string[];
  config: TSystem;
}

/** A validated adapter configuration. */
export interface AdapterConfig<TSystem> {
  adapterId: string;
  kind?: string;
  stateDir: string;
  heartbeatIntervalMs: number;
  verifyIntervalMs: number;
  deliveredAckDelayMs: number;
  retry: { initialMs: number; maxMs: number };
  kafka: KafkaConnectionConfig;
  httpPort: number;
  logLevel: LogLevel;
  systems: ServedSystem<TSystem>[];
  signingKey: SigningKey;
  trustedKeys: PublicKeyLookup;
}

/**
 * The configuration as written in `ADAPTER_CONFIG` or passed to `startAdapter`: defaults may be left
 * out, and each system is `{ ...adapter-specific settings, exemptPrincipals? }`, keyed by system id.
 */
export interface AdapterConfigInput<TSystemInput> {
  adapterId: string;
  kind?: string;
  stateDir: string;
  heartbeatIntervalMs?: number;
  verifyIntervalMs?: number;
  deliveredAckDelayMs?: number;
  retry?: { initialMs?: number; maxMs?: number };
  kafka?: { brokers: string[]; clientId?: string; sasl?: KafkaConnectionConfig['sasl']; ssl?: boolean | { ca: string } };
  httpPort?: number;
  logLevel?: LogLevel;
  signingKey: { keyId: string; privateKey: string };
  trustedKeys: Record<string, string>;
  systems: Record<string, TSystemInput & { exemptPrincipals?: string[] }>;
}

function describeIssues(error: z.ZodError, prefix: readonly PropertyKey[] = []): string[] {
  return error.issues.map((issue) => {
    const path = [...prefix, ...issue.path].map(String).join('.');
    return `${path || '(config)'}: ${issue.message}`;
  });
}

/**
 * Validates an adapter configuration, including every system's settings against the adapter's own
 * schema. Throws `AdapterConfigError` listing every problem at once.
 */
export function parseAdapterConfig<TSystem, TSystemInput>(
  input: unknown,
  systemConfigSchema: z.ZodType<TSystem, TSystemInput>,
): AdapterConfig<TSystem> {
  const parsed = AdapterSettingsSchema.safeParse(input);
  if (!parsed.success) throw new AdapterConfigError(describeIssues(parsed.error));
  const settings = parsed.data;

  const issues: string[] = [];
  const systems: ServedSystem<TSystem>[] = [];
  for (const [systemId, entry] of Object.entries(settings.systems)) {
    const path = ['systems', systemId];
    if (!SLUG_PATTERN.test(systemId)) issues.push(`${path.join('.')}: system id must be a lower-case slug`);
    const base = ServedSystemBaseSchema.safeParse(entry);
    const own = systemConfigSchema.safeParse(entry);
    if (!base.success) issues.push(...describeIssues(base.error, path));
    if (!own.success) issues.push(...describeIssues(own.error, path));
    if (base.success && own.success) {
      systems.push({ systemId, exemptPrincipals: base.data.exemptPrincipals, config: own.data });
    }
  }
  let signingKey: SigningKey | undefined;
  try {
    signingKey = { keyId: settings.signingKey.keyId, privateKey: parsePrivateKey(settings.signingKey.privateKey) };
  } catch (error) {
    issues.push(`signingKey.privateKey: ${(error as Error).message}`);
  }
  const trusted = new Map<string, KeyObject>();
  for (const [keyId, pem] of Object.entries(settings.trustedKeys)) {
    try {
      trusted.set(keyId, parsePublicKey(pem));
    } catch (error) {
      issues.push(`trustedKeys.${keyId}: ${(error as Error).message}`);
    }
  }
  let ssl: KafkaConnectionConfig['ssl'] = typeof settings.kafka.ssl === 'boolean' ? settings.kafka.ssl : undefined;
  if (typeof settings.kafka.ssl === 'object') {
    try {
      ssl = { ca: trustedCaCertificates(settings.kafka.ssl.ca, 'kafka.ssl.ca') };
    } catch (error) {
      issues.push((error as Error).message);
    }
  }
  if (issues.length > 0 || !signingKey) throw new AdapterConfigError(issues);

  return {
    signingKey,
    trustedKeys: (keyId) => trusted.get(keyId),
    adapterId: settings.adapterId,
    kind: settings.kind,
    stateDir: settings.stateDir,
    heartbeatIntervalMs: settings.heartbeatIntervalMs,
    verifyIntervalMs: settings.verifyIntervalMs,
    deliveredAckDelayMs: settings.deliveredAckDelayMs,
    retry: settings.retry,
    kafka: { ...settings.kafka, ssl, clientId: settings.kafka.clientId ?? `portcullis-adapter-${settings.adapterId}` },
    httpPort: settings.httpPort,
    logLevel: settings.logLevel,
    systems,
  };
}
