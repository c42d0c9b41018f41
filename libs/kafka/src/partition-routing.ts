import { AssignerProtocol, Partitioners, type Message, type PartitionAssigner, type PartitionerArgs } from 'kafkajs';

/**
 * Routing records to partitions by something other than their key.
 *
 * The decisions topic is keyed by system id (compaction keeps each system's latest decision), but it is
 * read by adapters, and each adapter needs only its own systems. With key hashing every adapter must read
 * every partition, so a fleet of A adapters reads each decision A times (a global revoke of 10,000 systems
 * is 500,000 records fetched and decoded by 50 adapters). Routed by adapter id instead, an adapter reads
 * only the partition its decisions are in: the fleet's read cost grows with partitions' share, not with A².
 *
 * Both sides use Kafka's own default rule — murmur2 of the bytes, made positive, modulo the partition count
 * (the Java client's, as kafkajs implements it) — applied to the route key instead of the record key, so a
 * client in any language can compute the same partition. A key's records all share one route, so they stay
 * in one partition, in order, and compaction works as before.
 *
 * The partition count of a routed topic must never change: records already written would sit in the old
 * partition of their route (the same rule Kafka has for keyed topics).
 */

/** An outgoing record that names its route; `partitionKey` is read by {@link RoutedPartitioner} only. */
export type RoutedMessage = Message & { partitionKey?: string };

const defaultPartitioner = Partitioners.DefaultPartitioner();

/** The partition of `routeKey` in a topic of `partitionCount` partitions. */
export function partitionForRoute(routeKey: string, partitionCount: number): number {
  if (!Number.isInteger(partitionCount) || partitionCount < 1) throw new RangeError(`invalid partition count ${partitionCount}`);
  const partitionMetadata = Array.from({ length: partitionCount }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  return defaultPartitioner({ topic: '', partitionMetadata, message: { key: routeKey, value: null } });
}

/**
 * kafkajs partitioner: a record with an explicit `partition` goes there, one with a `partitionKey` to the
 * partition of that route, any other as kafkajs' default partitioner would send it (by key).
 */
export const RoutedPartitioner = (): ((args: PartitionerArgs) => number) => {
  const byKey = Partitioners.DefaultPartitioner();
  return (args) => {
    const { partitionKey } = args.message as RoutedMessage;
    if (partitionKey === undefined || args.message.partition != null) return byKey(args);
    return byKey({ ...args, message: { ...args.message, key: partitionKey } });
  };
};

/**
 * kafkajs partition assigner for a consumer group that reads one route: every subscribed topic's partition
 * of `routeKey` goes to ONE member — the one that has been running longest (its start time travels in its
 * group metadata), so a member that joins later never takes the route from a running one — and the other
 * members get nothing. Two instances of one adapter therefore never split its systems between them, and
 * a second instance started by mistake (or early, in a rolling update) stays idle until the first leaves.
 * It is not a hot stand-by: its state is its own (see the adapter kit's README).
 */
export function singleRouteAssigner(routeKey: string, startedAt: number = Date.now()): PartitionAssigner {
  const since = Buffer.from(String(startedAt));
  return ({ cluster }) => ({
    name: 'PortcullisSingleRoute',
    version: 1,
    async assign({ members, topics }) {
      const candidates = members.map((member) => ({ memberId: member.memberId, since: startedAtOf(member.memberMetadata) }));
      candidates.sort((a, b) => a.since - b.since || (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
      const [active, ...idle] = candidates.map((candidate) => candidate.memberId);
      const assignment: Record<string, number[]> = {};
      for (const topic of topics) {
        const partitions = cluster.findTopicPartitionMetadata(topic);
        if (partitions.length > 0) assignment[topic] = [partitionForRoute(routeKey, partitions.length)];
      }
      const encode = (memberAssignment: Record<string, number[]>) =>
        AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: memberAssignment, userData: Buffer.alloc(0) });
      if (active === undefined) return [];
      return [
        { memberId: active, memberAssignment: encode(assignment) },
        ...idle.map((memberId) => ({ memberId, memberAssignment: encode({}) })),
      ];
    },
    protocol({ topics }) {
      return {
        name: 'PortcullisSingleRoute',
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: since }),
      };
    },
  });
}

/** A member's start time from its group metadata; a member that does not say sorts last. */
function startedAtOf(metadata: Buffer): number {
  const since = Number(AssignerProtocol.MemberMetadata.decode(metadata)?.userData?.toString() ?? '');
  return Number.isFinite(since) && since > 0 ? since : Number.MAX_SAFE_INTEGER;
}
