/** Requests the bench orchestrator sends to an adapter worker over the IPC channel, and their answers. */

/** How a Kafka client of the run connects: the broker's SASL/SCRAM listener as a user, or the loopback tooling listener. */
export interface KafkaConnection {
  brokers: string[];
  /** Absent on the tooling listener (`--kafka-listener tooling`). */
  sasl?: { mechanism: 'scram-sha-512'; username: string; password: string };
  /** On the TLS listener (`--kafka-listener tls`): the CA certificate (PEM text) the client trusts. */
  ssl?: { ca: string };
}

/** kafkajs' `ssl` option for a connection: only the run's CA is trusted. */
export function kafkajsSsl(connection: KafkaConnection): { ca: string[] } | undefined {
  return connection.ssl ? { ca: [connection.ssl.ca] } : undefined;
}

export interface AdapterInstanceSpec {
  adapterId: string;
  stateDir: string;
  /** `noop`: the no-op enforcer; `postgres`: the real PostgresRoleEnforcer. */
  enforcer: 'noop' | 'postgres';
  /** System id → adapter-specific settings (`{}` for noop, `{ url }` for postgres). */
  systems: Record<string, Record<string, unknown>>;
  /**
   * The instance's own Ed25519 key (one per instance, made by the orchestrator for this run): it signs
   * the instance's acknowledgements and heartbeats; an admin registered its public half for `adapterId`.
   */
  signingKey: { keyId: string; privateKey: string };
}

export interface StartAdaptersParams {
  kafka: KafkaConnection;
  heartbeatIntervalMs: number;
  verifyIntervalMs: number;
  /** The policy service's public key(s) by key id (SPKI PEM): only decisions they sign are obeyed. */
  trustedKeys: Record<string, string>;
  instances: AdapterInstanceSpec[];
}

export interface StartBaselineParams {
  kafka: KafkaConnection;
  requestTopic: string;
  replyTopic: string;
  /** One raw kafkajs consumer (own consumer group) and producer per id. */
  consumerIds: string[];
  groupPrefix: string;
  /**
   * One reply per fetched batch, in one produce request (the throughput baseline: what a raw client
   * does under load); otherwise one produce request per message (the tte baselines, one message at a time).
   */
  batchReplies?: boolean;
  /**
   * Each consumer reads only the partition of its own id (`singleRouteAssigner`) and answers only the
   * requests keyed with its id (the scale baseline: routed as the decisions are to their adapters).
   */
  routed?: boolean;
}

export interface WorkerUsage {
  pid: number;
  rssBytes: number;
  heapUsedBytes: number;
  cpuUserMicros: number;
  cpuSystemMicros: number;
}

export type WorkerRequest =
  | { id: number; method: 'startAdapters'; params: StartAdaptersParams }
  | { id: number; method: 'stopAdapters' }
  | { id: number; method: 'startBaseline'; params: StartBaselineParams }
  | { id: number; method: 'stopBaseline' }
  | { id: number; method: 'usage' }
  | { id: number; method: 'shutdown' };

export type WorkerResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface WorkerReady {
  ready: true;
  pid: number;
}
