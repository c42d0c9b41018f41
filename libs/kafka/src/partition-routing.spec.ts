import { AssignerProtocol, type PartitionMetadata } from 'kafkajs';
import { partitionForRoute, RoutedPartitioner, singleRouteAssigner, type RoutedMessage } from './partition-routing';

function metadata(count: number): PartitionMetadata[] {
  return Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 1, partitionErrorCode: 0, replicas: [1], isr: [1] }));
}

describe('partition routing', () => {
  const routes = Array.from({ length: 200 }, (_, i) => `adapter-${i}`);

  it("puts a route where the Java client's default partitioner puts a record keyed by the route", () => {
    // murmur2 of '0', '1' and '128' as Kafka's Java client computes it (971027396, -1993445489, -326012175),
    // made positive (& 0x7fffffff) and taken modulo the partition count.
    expect(partitionForRoute('0', 1_000_000)).toBe(27_396);
    expect(partitionForRoute('1', 1_000_000)).toBe(38_159);
    expect(partitionForRoute('128', 1_000_000)).toBe(471_473);
    expect(partitionForRoute('128', 6)).toBe(1_821_471_473 % 6);
  });

  it('spreads routes over every partition, and refuses a partition count that is not a positive integer', () => {
    expect(new Set(routes.map((route) => partitionForRoute(route, 6)))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    expect(() => partitionForRoute('a', 0)).toThrow(RangeError);
    expect(() => partitionForRoute('a', 1.5)).toThrow(RangeError);
  });

  it('routes a record by its partitionKey, keeps an explicit partition, and falls back to the key', () => {
    const partition = RoutedPartitioner();
    const args = (message: RoutedMessage) => ({ topic: 't', partitionMetadata: metadata(6), message });
    const route = routes.find((candidate) => partitionForRoute(candidate, 6) !== partitionForRoute('system-1', 6))!;

    expect(partition(args({ key: 'system-1', value: 'v', partitionKey: route }))).toBe(partitionForRoute(route, 6));
    expect(partition(args({ key: 'system-1', value: 'v' }))).toBe(partitionForRoute('system-1', 6));
    expect(partition(args({ key: 'system-1', value: 'v', partitionKey: route, partition: 5 }))).toBe(5);
  });

  describe('singleRouteAssigner', () => {
    const cluster = { findTopicPartitionMetadata: (topic: string) => (topic === 'decisions' ? metadata(6) : []) };
    const assignerStartedAt = (startedAt: number) =>
      singleRouteAssigner('adapter-7', startedAt)({ cluster: cluster as never, groupId: 'g', logger: undefined as never });
    const member = (memberId: string, startedAt: number) => ({
      memberId,
      memberMetadata: assignerStartedAt(startedAt).protocol({ topics: ['decisions'] }).metadata,
    });
    const decode = (buffer: Buffer) => AssignerProtocol.MemberAssignment.decode(buffer)?.assignment;
    const assign = async (members: { memberId: string; memberMetadata: Buffer }[], topics = ['decisions']) =>
      Object.fromEntries((await assignerStartedAt(1).assign({ members, topics })).map((entry) => [entry.memberId, decode(entry.memberAssignment)]));

    it("gives the route's partition of each topic to the member running longest, and nothing to the others", async () => {
      const route = partitionForRoute('adapter-7', 6);
      // m-1 sorts first by id but started later: the running member keeps the route.
      expect(await assign([member('m-2', 1_000), member('m-1', 2_000)])).toEqual({ 'm-2': { decisions: [route] }, 'm-1': {} });
      expect(await assign([member('m-2', 3_000), member('m-1', 2_000)])).toEqual({ 'm-1': { decisions: [route] }, 'm-2': {} });
      // Same start time: by member id.
      expect(await assign([member('m-2', 5), member('m-1', 5)])).toEqual({ 'm-1': { decisions: [route] }, 'm-2': {} });
      // A member whose metadata says nothing comes last.
      const silent = { memberId: 'm-0', memberMetadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics: ['decisions'], userData: Buffer.alloc(0) }) };
      expect(await assign([silent, member('m-9', 7)])).toEqual({ 'm-9': { decisions: [route] }, 'm-0': {} });
    });

    it('assigns nothing for a topic it has no metadata for, and nothing to nobody', async () => {
      expect(await assign([member('m-1', 1)], ['unknown'])).toEqual({ 'm-1': {} });
      expect(await assignerStartedAt(1).assign({ members: [], topics: ['decisions'] })).toEqual([]);
    });

    it('announces its protocol with the subscribed topics and its start time', () => {
      const protocol = assignerStartedAt(1_234).protocol({ topics: ['decisions'] });
      expect(protocol.name).toBe('PortcullisSingleRoute');
      expect(AssignerProtocol.MemberMetadata.decode(protocol.metadata)).toMatchObject({ topics: ['decisions'], userData: Buffer.from('1234') });
    });
  });
});
