import type { RunningAdapter } from '@portcullis/adapter-kit';
import {
  AccessAcknowledgedV1Schema,
  encodeMessage,
  encodeSignedMessage,
  envelopeHeader,
  signMessage,
  SystemAccessChangedV1Schema,
  Topics,
  type AccessAcknowledgedV1,
  type SigningKey,
  type SystemAccessChangedV1,
} from '@portcullis/contracts';
import { createKafka, ReliableProducer, RoutedPartitioner, type RoutedMessage } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { postgresAdapterConfig, startPostgresAdapter } from '@test/support/postgres-adapter';
import { PostgresTarget } from '@test/support/postgres-target';
import { readTestEnv } from '@test/support/test-env';
import { testKeys } from '@test/support/test-keys';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';

interface AlertView {
  adapterId: string;
  systemId: string;
  reason: string;
  severity: string;
  verified: boolean;
  explanation: string | null;
}

/**
 * The kill switch must not become the attack path. These specs act as an attacker who can write to the
 * Kafka topics (the loopback tooling listener of the test broker): forged, tampered, replayed, re-targeted,
 * rolled-back, expired and conflicting decisions go straight onto the desired-state topic, and forged
 * acknowledgements onto the acknowledgements topic. Nothing may change on the real PostgreSQL target,
 * every refusal must be recorded by the policy service, and a forged acknowledgement must not make a
 * command look enforced. Positive controls (the same path with the right key) show the specs can fail.
 */
describe('forged, replayed and re-targeted messages on Kafka', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const stock = `stock-${suffix}`;
  const ledger = `ledger-${suffix}`;
  const orphan = `orphan-${suffix}`;
  const group = `back-office-${suffix}`;
  const orphanGroup = `orphans-${suffix}`;
  const adapterId = `pg-trust-${suffix}`;
  const absentAdapterId = `pg-absent-${suffix}`;
  const stockDb = new PostgresTarget(env.postgres.targetUrls[0], `trust_${suffix}_`);
  const ledgerDb = new PostgresTarget(env.postgres.targetUrls[1], `trust_${suffix}_`);
  const kafka = createKafka({ brokers: env.kafka.brokers, clientId: `attacker-${suffix}` });
  const attacker = new ReliableProducer(kafka);
  const attackerKey: SigningKey = { keyId: testKeys.policy.keyId, privateKey: generateKeyPairSync('ed25519').privateKey };

  let service: RunningPolicyService;
  let api: PolicyApi;
  let adapter: RunningAdapter;
  /** The genuine decisions the policy service published for `stock`, as bytes, in order. */
  let genuine: string[] = [];

  /** Publishes where the adapter reads: the partition its decisions are routed to (an attacker can compute it). */
  async function publishDecision(key: string, value: string): Promise<void> {
    await attacker.send([{ topic: Topics.systemAccess, key, partitionKey: adapterId, value }]);
  }

  async function alerts(): Promise<AlertView[]> {
    return (await api.get<AlertView[]>('/security-alerts')).filter((alert) => alert.adapterId === adapterId);
  }

  /** Waits until the adapter has reported `reason` once more than before, and returns that alert. */
  async function expectAlert(reason: string, before: number, systemId = stock): Promise<AlertView> {
    return eventually(async () => {
      const matching = (await alerts()).filter((alert) => alert.reason === reason && alert.systemId === systemId);
      expect(matching.length).toBe(before + 1);
      return matching[0];
    });
  }

  async function count(reason: string, systemId = stock): Promise<number> {
    return (await alerts()).filter((alert) => alert.reason === reason && alert.systemId === systemId).length;
  }

  /** The current decision for stock, as the policy service signed it, parsed. */
  function latestGenuine(): SystemAccessChangedV1 {
    return JSON.parse(genuine[genuine.length - 1]);
  }

  async function readGenuineDecisions(): Promise<string[]> {
    const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}` });
    const seen: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (message.key?.toString() === stock && message.value) seen.push(message.value.toString());
      },
    });
    try {
      await eventually(() => expect(seen.length).toBeGreaterThanOrEqual(3));
    } finally {
      await consumer.disconnect();
    }
    return seen.filter((value) => JSON.parse(value).producer === 'policy-service');
  }

  beforeAll(async () => {
    await stockDb.createRoles({ clerk: 'LOGIN' });
    await ledgerDb.createRoles({ clerk: 'LOGIN' });
    service = await startPolicyService(env);
    api = new PolicyApi(service);
    await api.registerSystem(stock, adapterId);
    await api.registerSystem(ledger, adapterId);
    await api.registerSystem(orphan, absentAdapterId);
    await api.createGroup(group, [stock, ledger]);
    await api.createGroup(orphanGroup, [orphan]);
    adapter = await startPostgresAdapter(
      postgresAdapterConfig(env, adapterId, join(env.workDir, `adapter-${adapterId}`), { [stock]: stockDb.url, [ledger]: ledgerDb.url }),
    );
    // Three genuine decisions: revoke (1), restore with four eyes (2), revoke (3). Access is now revoked.
    await api.until(await api.decide('revoke', group, { reason: 'contain', incidentRef: 'INC-1' }));
    await api.until(await api.decide('restore', group, { reason: 'all clear', incidentRef: 'INC-1' }));
    await api.until(await api.decide('revoke', group, { reason: 'attackers back', incidentRef: 'INC-2' }));
    genuine = await readGenuineDecisions();
    expect(genuine.map((value) => JSON.parse(value).generation)).toEqual([1, 2, 3]);
    expect(await stockDb.canLogIn('clerk')).toBe(false);
  });

  afterAll(async () => {
    await adapter?.stop();
    await attacker.disconnect();
    await service?.stop();
    await service?.db.end();
  });

  /** Access stays revoked on the real target, and the adapter still holds generation 3. */
  async function expectUnchanged(): Promise<void> {
    expect(await stockDb.canLogIn('clerk')).toBe(false);
    expect(adapter.system(stock)?.desired).toMatchObject({ generation: 3, state: 'revoked' });
  }

  function forgedRestore(overrides: Partial<SystemAccessChangedV1['data']> = {}, generation = 4): SystemAccessChangedV1 {
    const current = latestGenuine();
    return {
      ...current,
      ...envelopeHeader('policy-service'),
      commandId: randomUUID(),
      generation,
      data: { ...current.data, desiredState: 'active', action: 'restore', reason: 'forged', ...overrides },
    };
  }

  it('refuses an unsigned restore', async () => {
    const before = await count('unsigned');
    const { keyId: _k, signature: _s, ...unsigned } = forgedRestore() as SystemAccessChangedV1 & { keyId?: string; signature?: string };
    await publishDecision(stock, encodeMessage(SystemAccessChangedV1Schema, unsigned));
    const alert = await expectAlert('unsigned', before);
    expect(alert).toMatchObject({ severity: 'high', verified: true });
    await expectUnchanged();
  });

  it('refuses a restore signed by a key it does not trust, even under the trusted key id', async () => {
    const [unknownBefore, badBefore] = [await count('unknown-key'), await count('bad-signature')];
    await publishDecision(stock, encodeSignedMessage(SystemAccessChangedV1Schema, forgedRestore(), { ...attackerKey, keyId: 'policy-rotated' }));
    await publishDecision(stock, encodeSignedMessage(SystemAccessChangedV1Schema, forgedRestore(), attackerKey));
    await expectAlert('unknown-key', unknownBefore);
    await expectAlert('bad-signature', badBefore);
    await expectUnchanged();
  });

  it('refuses a genuine decision altered after signing', async () => {
    const before = await count('bad-signature');
    const tampered = JSON.parse(genuine[2]);
    tampered.data.desiredState = 'active';
    tampered.generation = 4;
    await publishDecision(stock, JSON.stringify(tampered));
    await expectAlert('bad-signature', before);
    await expectUnchanged();
  });

  it('refuses a replay of the decision it applied, and a replay of an older genuine restore (rollback)', async () => {
    const [replayedBefore, rolledBackBefore] = [await count('replayed'), await count('rolled-back')];
    await publishDecision(stock, genuine[2]); // the revoke it holds, bytes unchanged
    await publishDecision(stock, genuine[1]); // the genuine restore of generation 2
    await expectAlert('replayed', replayedBefore);
    const rollback = await expectAlert('rolled-back', rolledBackBefore);
    expect(rollback.severity).toBe('high');
    await expectUnchanged();
  });

  /** Every record of `key` on the decisions topic, in order (null for a tombstone). */
  async function recordsOf(key: string): Promise<(SystemAccessChangedV1 | null)[]> {
    const admin = kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(Topics.systemAccess);
    await admin.disconnect();
    const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}` });
    const seen: (SystemAccessChangedV1 | null)[] = [];
    let remaining = ends.filter((end) => Number(end.high) > 0).length;
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          if (message.key?.toString() === key) seen.push(message.value ? JSON.parse(message.value.toString()) : null);
          const end = ends.find((entry) => entry.partition === partition)!;
          if (BigInt(message.offset) + 1n === BigInt(end.high) && --remaining === 0) resolve();
        },
      });
    });
    await consumer.disconnect();
    return seen;
  }

  it('publishes the current decision again over a replayed genuine restore, so compaction cannot keep the replay as the last word', async () => {
    await publishDecision(stock, genuine[1]); // the genuine restore of generation 2, appended again
    await eventually(async () => {
      const records = await recordsOf(stock);
      const replayAt = records.map((record) => record?.messageId ?? '').lastIndexOf(JSON.parse(genuine[1]).messageId);
      const after = records.slice(replayAt + 1);
      // The last record of the key is a genuine issue of the current decision (generation 3, revoked).
      expect(after.at(-1)).toMatchObject({ generation: 3, producer: 'policy-service', data: { desiredState: 'revoked' } });
    }, 20_000);
    const alerts = (await api.get<AlertView[]>('/security-alerts')).filter((alert) => alert.adapterId === 'policy-service' && alert.systemId === stock);
    expect(alerts.map((alert) => alert.reason)).toContain('older-than-the-last-published');
    await expectUnchanged();
  });

  it('publishes the current decision again over a tombstone, which compaction would turn into no decision at all', async () => {
    const raw = kafka.producer({ createPartitioner: RoutedPartitioner });
    await raw.connect();
    const tombstone: RoutedMessage = { key: stock, value: null, partitionKey: adapterId };
    await raw.send({ topic: Topics.systemAccess, acks: -1, messages: [tombstone] });
    await raw.disconnect();
    await eventually(async () => {
      const records = await recordsOf(stock);
      expect(records.lastIndexOf(null)).toBeGreaterThanOrEqual(0);
      expect(records.at(-1)).toMatchObject({ generation: 3, data: { desiredState: 'revoked' } });
    }, 20_000);
    const alerts = (await api.get<AlertView[]>('/security-alerts')).filter((alert) => alert.adapterId === 'policy-service' && alert.systemId === stock);
    expect(alerts.map((alert) => alert.reason)).toContain('tombstone');
    await expectUnchanged();
  });

  it('refuses a genuine decision re-targeted at another system, and one addressed to another adapter', async () => {
    const before = await count('wrong-target', ledger);
    await publishDecision(ledger, genuine[1]); // stock's genuine restore, published under ledger's key
    await publishDecision(
      ledger,
      encodeSignedMessage(SystemAccessChangedV1Schema, forgedRestore({ systemId: ledger, adapterId: absentAdapterId }), testKeys.policy),
    );
    await eventually(async () => expect(await count('wrong-target', ledger)).toBe(before + 2));
    expect(await ledgerDb.canLogIn('clerk')).toBe(false);
    await expectUnchanged();
  });

  it('refuses an expired decision, even correctly signed', async () => {
    const before = await count('expired');
    const expired = forgedRestore({ expiresAt: new Date(Date.now() - 60_000).toISOString() });
    await publishDecision(stock, encodeSignedMessage(SystemAccessChangedV1Schema, expired, testKeys.policy));
    await expectAlert('expired', before);
    await expectUnchanged();
  });

  it('flags as critical a second, different decision signed for a generation already applied', async () => {
    const before = await count('conflicting-generation');
    await publishDecision(stock, encodeSignedMessage(SystemAccessChangedV1Schema, forgedRestore({}, 3), testKeys.policy));
    const alert = await expectAlert('conflicting-generation', before);
    expect(alert.severity).toBe('critical');
    await expectUnchanged();
  });

  it('records every refusal in the audit trail as a security alert', async () => {
    const entries = await api.get<{ items: { actor: string; action: string; systemId: string; details: Record<string, unknown> }[] }>(
      `/audit?action=security.alert&limit=100`,
    );
    const reasons = entries.items.filter((entry) => entry.actor === `adapter:${adapterId}`).map((entry) => entry.details.alertReason);
    expect(new Set(reasons)).toEqual(
      new Set(['unsigned', 'unknown-key', 'bad-signature', 'replayed', 'rolled-back', 'wrong-target', 'expired', 'conflicting-generation']),
    );
  });

  it('positive control: a genuine new decision signed with the policy key still goes through', async () => {
    const commandId = await api.decide('restore', group, { reason: 'verified clean', incidentRef: 'INC-2' });
    await api.until(commandId);
    expect(await stockDb.canLogIn('clerk')).toBe(true);
    await api.until(await api.decide('revoke', group, { reason: 'again', incidentRef: 'INC-3' }));
    expect(await stockDb.canLogIn('clerk')).toBe(false);
  });

  it('explains the copies a send of uncertain outcome leaves behind, and only those', async () => {
    const [replayedBefore, rolledBackBefore] = [await count('replayed'), await count('rolled-back')];
    // The broker writes the relay's batch but its answer is lost: the relay sends the batch again.
    const producer = service.app.get(ReliableProducer);
    const send = producer.send.bind(producer);
    let answersLost = 0;
    const lostAnswer = jest.spyOn(producer, 'send').mockImplementationOnce(async (messages) => {
      await send(messages);
      answersLost += 1;
      throw new Error('the broker wrote the batch, but its answer was lost');
    });
    try {
      await api.until(await api.decide('restore', group, { reason: 'verified clean', incidentRef: 'INC-4' }));
    } finally {
      lostAnswer.mockRestore();
    }
    expect(answersLost).toBe(1);
    await api.until(await api.decide('revoke', group, { reason: 'again', incidentRef: 'INC-4' }));
    // The adapter applied the first copy and refused the second: explained, and the target is as decided.
    const copy = await expectAlert('replayed', replayedBefore);
    expect(copy.explanation).toMatch(/a second copy the policy service published itself: a send of message [0-9a-f-]{36} /);
    expect(await stockDb.canLogIn('clerk')).toBe(false);
    // An attacker appending a genuine message the service sent once is still an unexplained rollback.
    await publishDecision(stock, genuine[1]);
    const rollback = await expectAlert('rolled-back', rolledBackBefore);
    expect(rollback).toMatchObject({ severity: 'high', explanation: null });
    expect((await alerts()).filter((alert) => alert.reason === 'replayed' && alert.systemId === stock && alert.explanation === null).length).toBe(
      replayedBefore,
    );
  });

  describe('acknowledgements', () => {
    let commandId: string;

    function enforcedAck(claimedAdapter: string, generation: number): AccessAcknowledgedV1 {
      return {
        ...envelopeHeader(`adapter-postgres/${claimedAdapter}`),
        type: 'access.acknowledged',
        version: 1,
        commandId,
        generation,
        data: { adapterId: claimedAdapter, systemId: orphan, desiredState: 'revoked', status: 'enforced', detail: 'all done (forged)' },
      };
    }

    async function publishAck(value: string): Promise<void> {
      await attacker.send([{ topic: Topics.acknowledgements, key: orphan, value }]);
    }

    async function rejections(): Promise<string[]> {
      const { rows } = await service.db.query<{ rejection_reason: string }>(
        `SELECT rejection_reason FROM acknowledgements WHERE system_id = $1 AND NOT accepted ORDER BY received_at`,
        [orphan],
      );
      return rows.map((row) => row.rejection_reason);
    }

    beforeAll(async () => {
      // The orphan system's adapter is not running: its revoke stays pending until something acknowledges.
      commandId = await api.decide('revoke', orphanGroup, { reason: 'contain', incidentRef: 'INC-9' });
    });

    it('does not count forged acknowledgements: unsigned, unknown key, or from an adapter not registered for the system', async () => {
      const generation = (await api.command(commandId)).systems[0].generation;
      await publishAck(encodeMessage(AccessAcknowledgedV1Schema, enforcedAck(absentAdapterId, generation)));
      await publishAck(encodeSignedMessage(AccessAcknowledgedV1Schema, enforcedAck(absentAdapterId, generation), attackerKey));
      // A real adapter's real key, speaking for a system that is not its own.
      await publishAck(encodeSignedMessage(AccessAcknowledgedV1Schema, enforcedAck(adapterId, generation), testKeys.adapter(adapterId)));

      await eventually(async () => expect(await rejections()).toHaveLength(3));
      expect(await rejections()).toEqual([
        expect.stringMatching(/^not signed/),
        expect.stringMatching(/which is not a registered, unrevoked key of adapter/),
        expect.stringMatching(/is not the adapter registered for system/),
      ]);
      expect((await api.command(commandId)).status).toMatch(/pending|overdue/);
      const audit = await api.get<{ items: unknown[] }>(`/audit?action=acknowledgement.rejected&systemId=${orphan}`);
      expect(audit.items).toHaveLength(3);
    });

    it('positive control: the registered adapter signing with its registered key is believed', async () => {
      const generation = (await api.command(commandId)).systems[0].generation;
      const ack = signMessage(enforcedAck(absentAdapterId, generation), testKeys.adapter(absentAdapterId));
      await publishAck(JSON.stringify(ack));
      await api.until(commandId, 'enforced');
    });

    it('keeps the evidence: the service\'s own database role cannot change or remove acknowledgements or alerts', async () => {
      const asService = new Client({ connectionString: service.config.databaseUrl });
      await asService.connect();
      try {
        for (const statement of [
          `UPDATE acknowledgements SET accepted = true WHERE system_id = '${orphan}'`,
          `DELETE FROM acknowledgements WHERE system_id = '${orphan}'`,
          `DELETE FROM security_alerts`,
        ]) {
          await expect(asService.query(statement)).rejects.toThrow(/permission denied/);
        }
      } finally {
        await asService.end();
      }
      expect(await rejections()).toHaveLength(3);
    });

    it('stops believing an adapter key once an admin revokes it', async () => {
      const key = testKeys.adapter(absentAdapterId);
      await service
        .http()
        .delete(`/api/v1/adapters/${absentAdapterId}/keys/${key.keyId}`)
        .auth(service.token('ada', 'admin'), { type: 'bearer' })
        .send({ reason: 'adapter host compromised' })
        .expect(200);
      const next = await api.decide('restore', orphanGroup, { reason: 'clean', incidentRef: 'INC-9' });
      const generation = (await api.command(next)).systems[0].generation;
      await publishAck(JSON.stringify(signMessage({ ...enforcedAck(absentAdapterId, generation), commandId: next, data: { ...enforcedAck(absentAdapterId, generation).data, desiredState: 'active' } }, key)));
      await eventually(async () => expect((await rejections()).at(-1)).toMatch(/not a registered, unrevoked key/), 15_000);
      expect((await api.command(next)).status).toMatch(/pending|overdue/);
    });
  });
});
