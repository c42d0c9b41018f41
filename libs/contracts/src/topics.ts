/**
 * Kafka topic names. The version suffix changes only with an incompatible change of the messages a
 * topic carries; within a version, producers may only add optional fields.
 */
export const Topics = {
  /**
   * Desired access state per system (key: system id). Compacted: the latest record per key is the
   * current decision, so an adapter that replays the topic from the start knows every system's
   * desired state. Produced only by the policy service.
   *
   * Routed by adapter: a record goes to the partition Kafka's default partitioner would choose for the
   * key `data.adapterId` (murmur2 of its UTF-8 bytes, made positive, modulo the partition count), not for
   * the system id, so each adapter reads one partition. Its partition count must never change.
   */
  systemAccess: 'portcullis.system-access.v1',
  /**
   * What adapters report about systems (key: system id): acknowledgements and detected drift, in order
   * per system. Produced by adapters.
   */
  acknowledgements: 'portcullis.acknowledgements.v1',
  /** Liveness and inventory of adapters (key: adapter id). Compacted. Produced by adapters. */
  adapterHeartbeats: 'portcullis.adapter-heartbeats.v1',
  /** Messages that failed validation where they arrived, with the reason (key: source topic). */
  deadLetters: 'portcullis.dead-letters.v1',
} as const;

export type TopicName = (typeof Topics)[keyof typeof Topics];
