/**
 * The Kafka ACLs of Portcullis: exactly what each service needs, nothing else. Applied by the test
 * runner (deploy/run-tests.ts) and the local stack (deploy/local-stack.ts) after the topics exist;
 * docs/kafka-security.md has the same table as `kafka-acls.sh` commands for a production cluster.
 *
 *   await applyPortcullisAcls(admin, {
 *     policyService: { principal: 'User:portcullis-policy-service' },
 *     adapters: [{ principal: 'User:portcullis-adapter-pg-main', consumerGroups: [literalGroup(adapterGroupId('pg-main'))] }],
 *   });
 *
 * | Principal      | Resource                                   | Operations      |
 * |----------------|--------------------------------------------|-----------------|
 * | policy service | topic portcullis.system-access.v1          | WRITE, DESCRIBE |
 * | policy service | topic portcullis.acknowledgements.v1       | READ            |
 * | policy service | topic portcullis.adapter-heartbeats.v1     | READ            |
 * | policy service | topic portcullis.dead-letters.v1           | WRITE           |
 * | policy service | group portcullis-policy-service (prefix)   | READ            |
 * | each adapter   | topic portcullis.system-access.v1          | READ            |
 * | each adapter   | topic portcullis.acknowledgements.v1       | WRITE           |
 * | each adapter   | topic portcullis.adapter-heartbeats.v1     | WRITE           |
 * | each adapter   | topic portcullis.dead-letters.v1           | WRITE           |
 * | each adapter   | group portcullis-adapter.<id> (or prefix)  | READ            |
 *
 * Kafka implies DESCRIBE from READ and WRITE, so every listed topic is also visible (metadata, offsets)
 * to its reader/writer. The idempotent producers need no cluster ACL: since Kafka 2.8 (KIP-679)
 * WRITE on any topic allows InitProducerId. No one gets CREATE, DELETE, ALTER, ALTER_CONFIGS or any
 * CLUSTER operation: topics are created by the cluster's owner (or the tooling listener locally),
 * so the policy service runs with `KAFKA_ENSURE_TOPICS=false` against such a cluster.
 * Above all, no adapter can WRITE `portcullis.system-access.v1`: a compromised adapter cannot issue
 * decisions. And the policy service cannot WRITE acknowledgements or heartbeats: it cannot forge an
 * adapter's confirmation.
 */
import {
  AclOperationTypes,
  AclPermissionTypes,
  AclResourceTypes,
  ResourcePatternTypes,
  type Admin,
  type AclEntry,
} from 'kafkajs';
import { Topics } from '../../libs/contracts/src/topics';

/** Consumer groups of the policy service start with this (`KAFKA_GROUP_ID` defaults to it). */
export const POLICY_SERVICE_GROUP_PREFIX = 'portcullis-policy-service';
/** Every adapter consumes the decisions in the group `portcullis-adapter.<adapterId>` (libs/adapter-kit). */
export const ADAPTER_GROUP_PREFIX = 'portcullis-adapter.';

export function adapterGroupId(adapterId: string): string {
  return `${ADAPTER_GROUP_PREFIX}${adapterId}`;
}

/** SCRAM user names used by the test broker and the local stack (any names work on a real cluster). */
export const KafkaUsers = {
  /** Super user (super.users) for administration over the SASL listener: topics, ACLs, users. */
  admin: 'portcullis-admin',
  policyService: 'portcullis-policy-service',
  /** One user per adapter (the tests share one user, `portcullis-adapter`, between their adapters). */
  adapter: (adapterId?: string) => (adapterId ? `portcullis-adapter-${adapterId}` : 'portcullis-adapter'),
} as const;

/** The Kafka principal of a SCRAM user. */
export const userPrincipal = (username: string) => `User:${username}`;

/** A consumer-group resource pattern: one group (`literal`) or every group whose id starts with `name`. */
export interface GroupPattern {
  name: string;
  pattern: 'literal' | 'prefixed';
}

export const literalGroup = (name: string): GroupPattern => ({ name, pattern: 'literal' });
export const prefixedGroup = (name: string): GroupPattern => ({ name, pattern: 'prefixed' });

export interface ServicePrincipal {
  /** A Kafka principal, e.g. `User:portcullis-policy-service` (SCRAM user `portcullis-policy-service`). */
  principal: string;
  /**
   * The consumer groups it may use. Default: the prefix `portcullis-policy-service` for the policy
   * service, the prefix `portcullis-adapter.` for an adapter. Prefer one literal group per adapter in
   * production: a prefix lets one adapter join another adapter's group and take its partitions away.
   */
  consumerGroups?: GroupPattern[];
}

export interface PortcullisPrincipals {
  policyService: ServicePrincipal;
  adapters: ServicePrincipal[];
}

function allow(
  principal: string,
  resourceType: AclResourceTypes,
  resourceName: string,
  operation: AclOperationTypes,
  resourcePatternType: ResourcePatternTypes = ResourcePatternTypes.LITERAL,
): AclEntry {
  return {
    principal,
    host: '*',
    resourceType,
    resourceName,
    resourcePatternType,
    operation,
    permissionType: AclPermissionTypes.ALLOW,
  };
}

function groupAcls(principal: string, groups: GroupPattern[]): AclEntry[] {
  return groups.map((group) =>
    allow(
      principal,
      AclResourceTypes.GROUP,
      group.name,
      AclOperationTypes.READ,
      group.pattern === 'prefixed' ? ResourcePatternTypes.PREFIXED : ResourcePatternTypes.LITERAL,
    ),
  );
}

function checkPrincipal(principal: string): void {
  if (!/^User:[A-Za-z0-9._-]+$/.test(principal)) throw new Error(`not a Kafka user principal: "${principal}"`);
}

/** The ALLOW entries that give each principal exactly what it needs (see the table above). */
export function portcullisAcls(principals: PortcullisPrincipals): AclEntry[] {
  const { TOPIC } = AclResourceTypes;
  const { READ, WRITE, DESCRIBE } = AclOperationTypes;
  const policy = principals.policyService;
  checkPrincipal(policy.principal);
  const entries: AclEntry[] = [
    allow(policy.principal, TOPIC, Topics.systemAccess, WRITE),
    // READ too: the policy service watches the decisions topic for records it did not publish (forged,
    // replayed, tombstones) and re-publishes the current decision over them.
    allow(policy.principal, TOPIC, Topics.systemAccess, READ),
    allow(policy.principal, TOPIC, Topics.systemAccess, DESCRIBE),
    allow(policy.principal, TOPIC, Topics.acknowledgements, READ),
    allow(policy.principal, TOPIC, Topics.adapterHeartbeats, READ),
    allow(policy.principal, TOPIC, Topics.deadLetters, WRITE),
    ...groupAcls(policy.principal, policy.consumerGroups ?? [prefixedGroup(POLICY_SERVICE_GROUP_PREFIX)]),
  ];
  for (const adapter of principals.adapters) {
    checkPrincipal(adapter.principal);
    if (adapter.principal === policy.principal) {
      throw new Error(`${adapter.principal}: an adapter must not share the policy service's principal`);
    }
    entries.push(
      allow(adapter.principal, TOPIC, Topics.systemAccess, READ),
      allow(adapter.principal, TOPIC, Topics.acknowledgements, WRITE),
      allow(adapter.principal, TOPIC, Topics.adapterHeartbeats, WRITE),
      allow(adapter.principal, TOPIC, Topics.deadLetters, WRITE),
      ...groupAcls(adapter.principal, adapter.consumerGroups ?? [prefixedGroup(ADAPTER_GROUP_PREFIX)]),
    );
  }
  // The same adapter principal listed twice (several adapters sharing a user) gives duplicates.
  const seen = new Set<string>();
  return entries.filter((entry) => {
    const key = aclKey(entry);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** kafkajs' enums are plain objects at run time (no reverse mapping): name of a value. */
function nameOf(values: object, value: number): string {
  return Object.entries(values).find(([, v]) => v === value)?.[0] ?? String(value);
}

/** A stable text form of an ACL entry, e.g. `User:x * ALLOW READ TOPIC LITERAL t` (comparisons, logs). */
export function aclKey(entry: AclEntry): string {
  return [
    entry.principal,
    entry.host,
    nameOf(AclPermissionTypes, entry.permissionType),
    nameOf(AclOperationTypes, entry.operation),
    nameOf(AclResourceTypes, entry.resourceType),
    nameOf(ResourcePatternTypes, entry.resourcePatternType),
    entry.resourceName,
  ].join(' ');
}

/**
 * Creates the ACLs (idempotent: Kafka ignores an ACL that already exists). `admin` must be connected
 * as a super user: the admin SCRAM user, or the loopback tooling listener.
 */
export async function applyPortcullisAcls(admin: Admin, principals: PortcullisPrincipals): Promise<AclEntry[]> {
  const acl = portcullisAcls(principals);
  await admin.createAcls({ acl });
  return acl;
}
