import { encodeSignedMessage, envelopeHeader, SystemAccessChangedV1Schema, Topics, type SystemAccessChangedV1 } from '@portcullis/contracts';
import { createKafka, partitionForRoute } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import type { Producer } from 'kafkajs';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import type { QueryRunner } from 'typeorm';
import { ReissueForRouting1764400700000 } from '../src/database/migrations/1764400700000-ReissueForRouting';

interface AlertRow {
  reason: string;
  severity: string;
  detail: string;
  explanation: string | null;
  payload: { partition: number; offset: string; routePartition?: number; alsoFound?: string | null };
}

/**
 * The policy service's watch of the decisions topic knows that decisions are routed by adapter: a record
 * that is not the latest decision in its system's route (the partition of its adapter) is repaired by
 * publishing the current decision again, as before; a record of the system in ANY other partition is
 * `misrouted` — no adapter of the system reads it and a re-issue (which goes to the route) cannot bury it —
 * so it is reported (`high` when it is not the service's own, `medium` for a genuine decision, such as one
 * written before decisions were routed) and nothing is re-published for it.
 *
 * The spec writes records straight into chosen partitions with a producer on the broker's tooling listener,
 * as an attacker (or a misconfigured producer) who can write to the topic could.
 */
describe('the decisions watch with routed decisions', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const stock = `watch-route-${suffix}`;
  const group = `watch-route-group-${suffix}`;
  const adapterId = `pg-watch-route-${suffix}`;
  const kafka = createKafka({ brokers: env.kafka.brokers, clientId: `watch-route-writer-${suffix}` });
  let producer: Producer;
  let service: RunningPolicyService;
  let api: PolicyApi;
  let route: number;
  let elsewhere: number;
  /** The service's genuine decisions for `stock`, as published (bytes), in order. */
  let genuine: string[] = [];

  /** Writes a record of `stock` into `partition`; returns its offset. */
  async function write(partition: number, value: string | null): Promise<string> {
    const [written] = await producer.send({ topic: Topics.systemAccess, acks: -1, messages: [{ key: stock, value, partition }] });
    expect(written.partition).toBe(partition);
    return written.baseOffset!;
  }

  async function alerts(): Promise<AlertRow[]> {
    const { rows } = await service.db.query<AlertRow>(
      `SELECT reason, severity, detail, explanation, payload FROM security_alerts WHERE adapter_id = 'policy-service' AND system_id = $1 ORDER BY received_at`,
      [stock],
    );
    return rows;
  }

  /** Waits for the alert about the record at `partition`/`offset`. */
  function alertAbout(partition: number, offset: string): Promise<AlertRow> {
    return eventually(async () => {
      const found = (await alerts()).find((alert) => alert.payload.partition === partition && alert.payload.offset === offset);
      if (!found) throw new Error(`no alert about ${partition}/${offset} yet`);
      return found;
    }, 20_000);
  }

  async function outboxRows(): Promise<string[]> {
    const { rows } = await service.db.query<{ payload: string }>(`SELECT payload FROM outbox WHERE message_key = $1 ORDER BY id`, [stock]);
    return rows.map((row) => row.payload);
  }

  const allPublished = () =>
    eventually(async () => {
      const { rows } = await service.db.query('SELECT count(*)::int AS count FROM outbox WHERE message_key = $1 AND published_at IS NULL', [stock]);
      if (rows[0].count !== 0) throw new Error(`${rows[0].count} outbox row(s) of ${stock} not published yet`);
    });

  beforeAll(async () => {
    producer = kafka.producer();
    await producer.connect();
    const admin = kafka.admin();
    await admin.connect();
    const partitionCount = (await admin.fetchTopicOffsets(Topics.systemAccess)).length;
    await admin.disconnect();
    route = partitionForRoute(adapterId, partitionCount);
    elsewhere = (route + 1) % partitionCount;
    expect(elsewhere).not.toBe(route);

    service = await startPolicyService(env);
    api = new PolicyApi(service);
    await api.registerSystem(stock, adapterId);
    await api.createGroup(group, [stock]);
    // Three genuine decisions (no adapter runs: they stay pending, which does not matter here).
    await api.decide('revoke', group, { reason: 'contain', incidentRef: 'INC-1' });
    await api.decide('restore', group, { reason: 'all clear', incidentRef: 'INC-1' });
    await api.decide('revoke', group, { reason: 'attackers back', incidentRef: 'INC-2' });
    await allPublished();
    genuine = await outboxRows();
    expect(genuine.map((value) => JSON.parse(value).generation)).toEqual([1, 2, 3]);
  });

  afterAll(async () => {
    await producer?.disconnect();
    await service?.stop();
    await service?.db.end();
  });

  it('still repairs a genuine older restore appended into the route: older-than-the-last-published, and the current decision published again', async () => {
    const before = (await outboxRows()).length;
    const offset = await write(route, genuine[1]); // the genuine restore of generation 2, replayed where the adapter reads
    const alert = await alertAbout(route, offset);
    expect(alert).toMatchObject({ reason: 'older-than-the-last-published', severity: 'high', explanation: null });
    await eventually(async () => expect((await outboxRows()).length).toBe(before + 1), 20_000);
    const reissue: SystemAccessChangedV1 = JSON.parse((await outboxRows()).at(-1)!);
    expect(reissue).toMatchObject({ generation: 3, data: { systemId: stock, adapterId, desiredState: 'revoked' } });
    await allPublished();
  });

  it('reports a forged record (and a tombstone) outside the route as misrouted, high, and publishes nothing for it', async () => {
    const before = (await outboxRows()).length;
    const current: SystemAccessChangedV1 = JSON.parse(genuine[2]);
    const attackerKey = { keyId: service.config.signing.keyId, privateKey: generateKeyPairSync('ed25519').privateKey };
    const forged: SystemAccessChangedV1 = {
      ...current,
      ...envelopeHeader('policy-service'),
      commandId: randomUUID(),
      generation: 4,
      data: { ...current.data, desiredState: 'active', action: 'restore', reason: 'forged' },
    };
    const forgedAt = await write(elsewhere, encodeSignedMessage(SystemAccessChangedV1Schema, forged, attackerKey));
    const forgedAlert = await alertAbout(elsewhere, forgedAt);
    expect(forgedAlert).toMatchObject({
      reason: 'misrouted',
      severity: 'high',
      payload: { routePartition: route, alsoFound: 'not-signed-by-the-service' },
    });
    expect(forgedAlert.detail).toContain('not signed by the policy service');
    expect(forgedAlert.detail).toContain('adapters do not read it');

    // A tombstone in the same partition: judged only after the forged record's handling has finished, so
    // once it is reported, any re-issue for the forged record would be in the outbox.
    const tombstoneAt = await write(elsewhere, null);
    const tombstoneAlert = await alertAbout(elsewhere, tombstoneAt);
    expect(tombstoneAlert).toMatchObject({ reason: 'misrouted', severity: 'high', payload: { alsoFound: 'tombstone' } });
    expect((await outboxRows()).length).toBe(before);
  });

  it('reports a genuine decision outside the route (as written before routing) as misrouted, medium, and publishes nothing for it', async () => {
    const before = (await outboxRows()).length;
    // The oldest genuine decision: older than the latest in the route, but judged in its own partition.
    const offset = await write(elsewhere, genuine[0]);
    const alert = await alertAbout(elsewhere, offset);
    expect(alert).toMatchObject({ reason: 'misrouted', severity: 'medium', payload: { routePartition: route, alsoFound: null } });
    expect(alert.detail).toContain('written before decisions were routed by adapter, or by a misconfigured producer; adapters do not read it');
    // Neither this record nor the tombstone before it (handled before it, in the same partition) was re-issued over.
    expect((await outboxRows()).length).toBe(before);
    const reasons = (await alerts()).map((each) => `${each.reason}/${each.severity}`);
    expect(reasons).toEqual(['older-than-the-last-published/high', 'misrouted/high', 'misrouted/high', 'misrouted/medium']);
  });

  it('after the ReissueForRouting migration, re-publishes every current decision, routed, in the first re-issue pass right after start', async () => {
    await service.stop();
    const before = (await outboxRows()).length;
    // What the migration does on an upgraded database (on this spec's fresh one it ran before there were systems).
    await new ReissueForRouting1764400700000().up({ query: (sql: string) => service.db.query(sql) } as unknown as QueryRunner);
    const started = Date.now();
    await service.restart();
    await eventually(async () => expect((await outboxRows()).length).toBe(before + 1), 15_000);
    expect(Date.now() - started).toBeLessThan(15_000);
    const { rows } = await service.db.query<{ partition_key: string; payload: string }>(
      `SELECT partition_key, payload FROM outbox WHERE message_key = $1 ORDER BY id DESC LIMIT 1`,
      [stock],
    );
    expect(rows[0].partition_key).toBe(adapterId);
    expect(JSON.parse(rows[0].payload)).toMatchObject({ generation: 3, data: { systemId: stock, desiredState: 'revoked' } });
    await allPublished();
    // Re-issued once: the watch's catch-up after the restart reports nothing again and re-issues nothing.
    expect((await alerts()).map((each) => each.reason)).toHaveLength(4);
  });

  it('explains an older genuine decision in the route that the relay noted as possibly sent twice, and still repairs it', async () => {
    // What the relay notes after a send of uncertain outcome (or on taking over a backlog): here, the first decision.
    const { rows } = await service.db.query<{ id: string; payload: string }>(`SELECT id, payload FROM outbox WHERE message_key = $1 ORDER BY id LIMIT 1`, [stock]);
    const messageId: string = JSON.parse(rows[0].payload).messageId;
    expect(rows[0].payload).toBe(genuine[0]);
    await service.db.query('INSERT INTO outbox_uncertain_sends (message_id, outbox_id, message_key) VALUES ($1, $2, $3)', [messageId, rows[0].id, stock]);
    const before = (await outboxRows()).length;

    const offset = await write(route, genuine[0]);
    const alert = await alertAbout(route, offset);
    expect(alert).toMatchObject({ reason: 'older-than-the-last-published', severity: 'high' });
    expect(alert.explanation).toContain(`a second copy the policy service published itself: a send of message ${messageId} (outbox row ${rows[0].id})`);
    // The audit entry of the alert carries the same explanation.
    const { rows: entries } = await service.db.query<{ details: { alertReason: string; record: { offset: string }; explanation?: string } }>(
      `SELECT details FROM audit_entries WHERE action = 'security.alert' AND system_id = $1 ORDER BY seq DESC LIMIT 1`,
      [stock],
    );
    expect(entries[0].details).toMatchObject({ alertReason: 'older-than-the-last-published', record: { offset }, explanation: alert.explanation });
    // Explained or not, the route is repaired: the current decision is published again over the old one.
    await eventually(async () => expect((await outboxRows()).length).toBe(before + 1), 20_000);
    expect(JSON.parse((await outboxRows()).at(-1)!)).toMatchObject({ generation: 3, data: { systemId: stock, desiredState: 'revoked' } });
    await allPublished();
  });
});
