import { Topics, type TopicName } from '@portcullis/contracts';

export interface TopicSpec {
  topic: TopicName;
  numPartitions: number;
  configEntries: { name: string; value: string }[];
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Every topic Portcullis uses, with its settings. Created explicitly (brokers run with
 * auto.create.topics.enable=false) by `ensureTopics`, at start of the policy service and by the
 * local stack and test harness. In production the same specs are applied by whoever owns the cluster.
 */
export function portcullisTopicSpecs(partitions = 6): TopicSpec[] {
  return [
    {
      // Current desired state per system: compacted, so it never loses the latest decision.
      topic: Topics.systemAccess,
      numPartitions: partitions,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'min.compaction.lag.ms', value: String(60 * 60 * 1000) },
        { name: 'segment.ms', value: String(DAY_MS) },
        { name: 'min.insync.replicas', value: '1' },
      ],
    },
    {
      topic: Topics.acknowledgements,
      numPartitions: partitions,
      configEntries: [
        { name: 'cleanup.policy', value: 'delete' },
        { name: 'retention.ms', value: String(14 * DAY_MS) },
      ],
    },
    {
      topic: Topics.adapterHeartbeats,
      numPartitions: 1,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact,delete' },
        { name: 'retention.ms', value: String(7 * DAY_MS) },
        { name: 'segment.ms', value: String(60 * 60 * 1000) },
      ],
    },
    {
      topic: Topics.deadLetters,
      numPartitions: 1,
      configEntries: [
        { name: 'cleanup.policy', value: 'delete' },
        { name: 'retention.ms', value: String(30 * DAY_MS) },
      ],
    },
  ];
}
