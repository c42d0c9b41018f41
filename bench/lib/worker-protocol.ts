/** Requests the bench orchestrator sends to an adapter worker over the IPC channel, and their answers. */

export interface AdapterInstanceSpec {
  adapterId: string;
  stateDir: string;
  /** `noop`: the no-op enforcer; `postgres`: the real PostgresRoleEnforcer. */
  enforcer: 'noop' | 'postgres';
  /** System id → adapter-specific settings (`{}` for noop, `{ url }` for postgres). */
  systems: Record<string, Record<string, unknown>>;
}

export interface StartAdaptersParams {
  brokers: string[];
  heartbeatIntervalMs: number;
  verifyIntervalMs: number;
  instances: AdapterInstanceSpec[];
}

export interface StartBaselineParams {
  brokers: string[];
  requestTopic: string;
  replyTopic: string;
  /** One raw kafkajs consumer (own consumer group) and producer per id. */
  consumerIds: string[];
  groupPrefix: string;
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
