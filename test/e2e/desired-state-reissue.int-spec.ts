import type { RunningAdapter } from '@portcullis/adapter-kit';
import { Topics, type SystemAccessChangedV1 } from '@portcullis/contracts';
import { createKafka } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { postgresAdapterConfig, startPostgresAdapter } from '@test/support/postgres-adapter';
import { PostgresTarget } from '@test/support/postgres-target';
import { readTestEnv } from '@test/support/test-env';
import type { Consumer } from 'kafkajs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/**
 * Signed decisions expire, revocations may last for weeks: the policy service re-issues the current
 * decision of every system before it expires (same command and generation, new message id and expiry).
 * An adapter takes the re-issue as a renewal — no enforcement, no alert — and an adapter that starts
 * fresh long after the decision finds a valid one on the topic.
 */
describe('re-issuing current decisions before they expire', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const stock = `reissue-${suffix}`;
  const group = `reissue-group-${suffix}`;
  const adapterId = `pg-reissue-${suffix}`;
  const target = new PostgresTarget(env.postgres.targetUrls[0], `reissue_${suffix}_`);
  const kafka = createKafka({ brokers: env.kafka.brokers, clientId: `reissue-reader-${suffix}` });
  const published: SystemAccessChangedV1[] = [];
  let reader: Consumer;
  let service: RunningPolicyService;
  let api: PolicyApi;
  let adapter: RunningAdapter;

  beforeAll(async () => {
    await target.createRoles({ clerk: 'LOGIN' });
    // Decisions valid for 8 s: re-issued once half of that has passed, checked every 2 s.
    service = await startPolicyService(env, { commandTtlSeconds: 8 });
    api = new PolicyApi(service);
    await api.registerSystem(stock, adapterId);
    await api.createGroup(group, [stock]);
    reader = kafka.consumer({ groupId: `reissue-reader-${suffix}` });
    await reader.connect();
    await reader.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await reader.run({
      eachMessage: async ({ message }) => {
        if (message.key?.toString() === stock && message.value) published.push(JSON.parse(message.value.toString()));
      },
    });
    adapter = await startPostgresAdapter(postgresAdapterConfig(env, adapterId, join(env.workDir, `adapter-${adapterId}`), { [stock]: target.url }));
  });

  async function alertsOfThisAdapter(): Promise<unknown[]> {
    return (await api.get<{ adapterId: string }[]>('/security-alerts')).filter((alert) => alert.adapterId === adapterId);
  }

  afterAll(async () => {
    await adapter?.stop();
    await reader?.disconnect();
    await service?.stop();
    await service?.db.end();
  });

  it('publishes the same decision again with a new message id and a later expiry; the adapter renews it quietly', async () => {
    const commandId = await api.decide('revoke', group, { reason: 'contain', incidentRef: 'INC-7' });
    await api.until(commandId);
    const first = published[0];

    await eventually(() => expect(published.length).toBeGreaterThanOrEqual(2), 20_000);
    const reissue = published[1];
    expect(reissue).toMatchObject({ commandId, generation: first.generation, data: { desiredState: 'revoked', adapterId } });
    expect(reissue.messageId).not.toBe(first.messageId);
    expect(Date.parse(reissue.data.expiresAt)).toBeGreaterThan(Date.parse(first.data.expiresAt));

    await eventually(() => expect(adapter.system(stock)?.desired?.generation).toBe(first.generation));
    expect(await target.canLogIn('clerk')).toBe(false);
    expect(await alertsOfThisAdapter()).toEqual([]);
    expect((await api.command(commandId)).status).toBe('enforced');
  });

  it('lets an adapter that lost its state, starting after the first decision expired, find a valid one', async () => {
    await adapter.stop();
    const first = published[0];
    await eventually(() => expect(Date.parse(first.data.expiresAt)).toBeLessThan(Date.now()), 15_000);
    const latest = published[published.length - 1];
    expect(Date.parse(latest.data.expiresAt)).toBeGreaterThan(Date.now());

    adapter = await startPostgresAdapter(
      postgresAdapterConfig(env, adapterId, join(env.workDir, `adapter-${adapterId}-fresh`), { [stock]: target.url }),
    );
    await eventually(() => expect(adapter.system(stock)).toMatchObject({ converged: true, desired: { generation: first.generation, state: 'revoked' } }));
    expect(await target.canLogIn('clerk')).toBe(false);
    expect(await alertsOfThisAdapter()).toEqual([]);
  });
});
