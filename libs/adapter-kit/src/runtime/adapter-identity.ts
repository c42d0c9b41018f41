/** Who is speaking in every message an adapter produces. */
export interface AdapterIdentity {
  adapterId: string;
  kind: string;
  /** Distinguishes two runs of the same adapter (one per process start). */
  instanceId: string;
  startedAt: Date;
}

/** The envelope `producer` of an adapter's messages, e.g. `adapter-postgres/pg-main`. */
export function producerOf(identity: AdapterIdentity): string {
  return `adapter-${identity.kind}/${identity.adapterId}`;
}
