import type { AdapterStateError } from './adapter-state.error';
import type { SystemStateRecord } from './system-state';

/** Where an adapter keeps its per-system state. `save` resolves only once the record is durable. */
export interface AdapterStateStore {
  /** Prepares the store (creates directories, clears leftovers of interrupted writes). */
  open(): Promise<void>;
  load(systemId: string): Promise<SystemStateRecord | undefined>;
  save(record: SystemStateRecord): Promise<void>;
  /** Waits for the saves in flight, then releases what the store holds (files, locks). */
  close?(): Promise<void>;
  /**
   * Set once the store refuses every save until the adapter is restarted (a write it could not roll
   * back, its directory taken over by another instance); the adapter then reports itself unhealthy.
   */
  failure?(): AdapterStateError | undefined;
}
