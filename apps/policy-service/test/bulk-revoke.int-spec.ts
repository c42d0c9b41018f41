import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';

/**
 * "Revoke everything in scope": many groups in one decision, all or nothing, each group decided exactly
 * as a single revoke (its own command, targets, outbox messages and audit entries).
 */
describe('revoking many groups at once', () => {
  const env = readTestEnv();
  let service: RunningPolicyService;
  let admin: string;
  let lead: string;

  const outboxKeys = async (): Promise<string[]> =>
    (await service.db.query<{ message_key: string }>(`SELECT message_key FROM outbox WHERE topic = 'portcullis.system-access.v1' ORDER BY id`)).rows.map(
      (row) => row.message_key,
    );
  const groupStates = async (): Promise<Record<string, string>> =>
    Object.fromEntries((await service.db.query<{ id: string; state: string }>('SELECT id, state FROM groups ORDER BY id')).rows.map((row) => [row.id, row.state]));

  beforeAll(async () => {
    service = await startPolicyService(env);
    admin = service.token('ada', 'admin');
    lead = service.token('alice', 'security-lead');
    for (const id of ['bulk-s1', 'bulk-s2', 'bulk-s3', 'bulk-s4']) {
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .send({ id, name: id, kind: 'postgres', adapterId: 'bulk-adapter' }).expect(201);
    }
    for (const [id, systemIds] of [['bulk-a', ['bulk-s1', 'bulk-s2']], ['bulk-b', ['bulk-s2', 'bulk-s3']], ['bulk-c', ['bulk-s4']]] as const) {
      await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' }).send({ id, name: id, systemIds }).expect(201);
    }
    await service.http().post('/api/v1/groups/bulk-c/revoke').auth(lead, { type: 'bearer' }).send({ reason: 'revoked before' }).expect(202);
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('refuses bad input with 400 and an unknown group with 404, writing nothing', async () => {
    const before = { outbox: await outboxKeys(), groups: await groupStates() };
    const post = (body: object) => service.http().post('/api/v1/groups/revoke').auth(lead, { type: 'bearer' }).send(body);
    await post({ groupIds: [], reason: 'contain' }).expect(400);
    await post({ groupIds: ['bulk-a', 'bulk-a'], reason: 'contain' }).expect(400);
    await post({ groupIds: ['Bulk A'], reason: 'contain' }).expect(400);
    await post({ groupIds: ['bulk-a'] }).expect(400);
    const unknown = await post({ groupIds: ['bulk-a', 'bulk-nope', 'bulk-b'], reason: 'contain' }).expect(404);
    expect(unknown.body.message).toContain('bulk-nope');
    await service.http().post('/api/v1/groups/revoke').auth(service.token('audrey', 'auditor'), { type: 'bearer' })
      .send({ groupIds: ['bulk-a'], reason: 'contain' }).expect(403);
    expect({ outbox: await outboxKeys(), groups: await groupStates() }).toEqual(before);
  });

  it('revokes every listed group in one decision: one command each, each system published once', async () => {
    const outboxBefore = (await outboxKeys()).length;
    const response = await service.http().post('/api/v1/groups/revoke').auth(lead, { type: 'bearer' })
      .send({ groupIds: ['bulk-b', 'bulk-a', 'bulk-c'], reason: 'Attackers inside: contain everything', incidentRef: 'INC-77' })
      .expect(202);

    expect(response.body.commands).toEqual([
      { groupId: 'bulk-a', commandId: expect.any(String), accepted: true },
      { groupId: 'bulk-b', commandId: expect.any(String), accepted: true },
      { groupId: 'bulk-c', commandId: expect.any(String), accepted: false }, // revoked already
    ]);
    expect(await groupStates()).toMatchObject({ 'bulk-a': 'revoked', 'bulk-b': 'revoked', 'bulk-c': 'revoked' });
    // bulk-s2 is in both groups: changed by the first, held by both, published once.
    expect((await outboxKeys()).slice(outboxBefore).sort()).toEqual(['bulk-s1', 'bulk-s2', 'bulk-s3']);

    const commandB = response.body.commands[1].commandId;
    const b = (await service.http().get(`/api/v1/commands/${commandB}`).auth(lead, { type: 'bearer' }).expect(200)).body;
    expect(b.systems.map((system: { systemId: string; changed: boolean }) => [system.systemId, system.changed])).toEqual([
      ['bulk-s2', false],
      ['bulk-s3', true],
    ]);

    const { rows: audit } = await service.db.query<{ action: string; group_id: string; incident_ref: string }>(
      `SELECT action, group_id, incident_ref FROM audit_entries WHERE incident_ref = 'INC-77' ORDER BY seq`,
    );
    expect(audit.map((entry) => `${entry.action} ${entry.group_id}`)).toEqual([
      'group.revoked bulk-a',
      'group.revoked bulk-b',
      'group.revoke.repeated bulk-c',
    ]);
    const verify = await service.http().get('/api/v1/audit/verify').auth(service.token('audrey', 'auditor'), { type: 'bearer' }).expect(200);
    expect(verify.body.intact).toBe(true);
  });

  it('voids an open restore request of a group it finds revoked, and follows a system another group of the same bulk revoked', async () => {
    // bulk-a, bulk-b and bulk-c are revoked (above). A restore of bulk-a is requested and waits for a second lead.
    const requested = await service.http().post('/api/v1/groups/bulk-a/restore').auth(lead, { type: 'bearer' })
      .send({ reason: 'looks clean' }).expect(202);
    const requestId = requested.body.command.id;
    await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
      .send({ id: 'bulk-s5', name: 'bulk-s5', kind: 'postgres', adapterId: 'bulk-adapter' }).expect(201);
    for (const [id, systemIds] of [['bulk-d', ['bulk-s4', 'bulk-s5']], ['bulk-e', ['bulk-s5']]] as const) {
      await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' }).send({ id, name: id, systemIds }).expect(201);
    }

    const response = await service.http().post('/api/v1/groups/revoke').auth(lead, { type: 'bearer' })
      .send({ groupIds: ['bulk-e', 'bulk-d', 'bulk-a'], reason: 'second wave', incidentRef: 'INC-78' })
      .expect(202);

    expect(response.body.commands.map((c: { groupId: string; accepted: boolean }) => [c.groupId, c.accepted])).toEqual([
      ['bulk-a', false],
      ['bulk-d', true],
      ['bulk-e', true],
    ]);
    const request = (await service.http().get(`/api/v1/commands/${requestId}`).auth(lead, { type: 'bearer' }).expect(200)).body;
    expect(request.approval).toMatchObject({ status: 'superseded' });
    // bulk-d changes bulk-s5 (bulk-s4 was revoked by bulk-c); bulk-e, decided after it, finds bulk-s5 revoked by bulk-d.
    const systemsOf = async (commandId: string) =>
      (await service.http().get(`/api/v1/commands/${commandId}`).auth(lead, { type: 'bearer' }).expect(200)).body.systems.map(
        (system: { systemId: string; changed: boolean; generation: number; detail: string | null }) => [system.systemId, system.changed, system.detail],
      );
    expect(await systemsOf(response.body.commands[1].commandId)).toEqual([
      ['bulk-s4', false, 'stays revoked: also covered by revoked group(s) bulk-c'],
      ['bulk-s5', true, null],
    ]);
    expect(await systemsOf(response.body.commands[2].commandId)).toEqual([['bulk-s5', false, 'stays revoked: also covered by revoked group(s) bulk-d']]);
    const { rows: audit } = await service.db.query<{ action: string; group_id: string }>(
      `SELECT action, group_id FROM audit_entries WHERE seq > (SELECT max(seq) FROM audit_entries WHERE action = 'restore.requested') ORDER BY seq`,
    );
    const order = audit.filter((entry) => /^(restore|group\.revoke)/.test(entry.action)).map((entry) => `${entry.action} ${entry.group_id}`);
    expect(order).toEqual(['restore.superseded bulk-a', 'group.revoke.repeated bulk-a', 'group.revoked bulk-d', 'group.revoked bulk-e']);
    const { rows: outbox } = await service.db.query<{ message_key: string; payload: string }>(
      `SELECT message_key, payload FROM outbox WHERE message_key = 'bulk-s5' ORDER BY id`,
    );
    expect(outbox.map((row) => JSON.parse(row.payload).generation)).toEqual([1]);
  });
});
