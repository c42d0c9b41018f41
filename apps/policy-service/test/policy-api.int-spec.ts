import { decodeMessage, SystemAccessChangedV1Schema, Topics, type SystemAccessChangedV1 } from '@portcullis/contracts';
import { createKafka } from '@portcullis/kafka';
import { eventually } from '@test/support/eventually';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import type { Consumer } from 'kafkajs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The policy service's HTTP contract against a real PostgreSQL and Kafka: authentication and roles,
 * input validation with nothing half-written, decisions published through the outbox.
 */
describe('policy service API', () => {
  const env = readTestEnv();
  let service: RunningPolicyService;
  let admin: string;
  let lead: string;
  let auditor: string;
  let consumer: Consumer;
  const published: SystemAccessChangedV1[] = [];

  beforeAll(async () => {
    service = await startPolicyService(env);
    admin = service.token('ada', 'admin');
    lead = service.token('alice', 'security-lead');
    auditor = service.token('audrey', 'auditor');
    consumer = createKafka({ brokers: env.kafka.brokers, clientId: 'api-spec' }).consumer({ groupId: `api-spec-${randomUUID()}` });
    await consumer.connect();
    await consumer.subscribe({ topic: Topics.systemAccess, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        // The topic is shared with other specs, some of which publish malformed messages on purpose.
        try {
          published.push(decodeMessage(SystemAccessChangedV1Schema, message.value));
        } catch {
          // not a decision of ours
        }
      },
    });
    for (const id of ['api-ledger', 'api-crm', 'api-stock']) {
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .send({ id, name: id, kind: 'postgres', adapterId: 'api-adapter', exemptPrincipals: ['breakglass'] }).expect(201);
    }
    await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
      .send({ id: 'api-back-office', name: 'Back office', systemIds: ['api-ledger', 'api-crm'] }).expect(201);
    await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
      .send({ id: 'api-finance', name: 'Finance', systemIds: ['api-ledger'] }).expect(201);
  });

  afterAll(async () => {
    await consumer?.disconnect();
    await service?.stop();
    await service?.db.end();
  });

  describe('authentication and roles', () => {
    it('answers 401 without a token and with a token signed by another key', async () => {
      await service.http().get('/api/v1/groups').expect(401);
      const forged = service.token('mallory', 'security-lead').replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
      await service.http().get('/api/v1/groups').auth(forged, { type: 'bearer' }).expect(401);
    });

    it('lets an auditor read but not revoke, restore or change the registry', async () => {
      await service.http().get('/api/v1/groups/api-back-office').auth(auditor, { type: 'bearer' }).expect(200);
      await service.http().get('/api/v1/audit').auth(auditor, { type: 'bearer' }).expect(200);
      const revoke = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(auditor, { type: 'bearer' })
        .send({ reason: 'auditors cannot do this' }).expect(403);
      expect(revoke.body.message).toContain('security-lead');
      await service.http().post('/api/v1/groups/api-back-office/restore').auth(auditor, { type: 'bearer' })
        .send({ reason: 'auditors cannot do this' }).expect(403);
      await service.http().post('/api/v1/systems').auth(auditor, { type: 'bearer' })
        .send({ id: 'nope', name: 'nope', kind: 'postgres' }).expect(403);
    });

    it('keeps registry changes for admins and decisions for security leads', async () => {
      await service.http().post('/api/v1/systems').auth(lead, { type: 'bearer' })
        .send({ id: 'lead-system', name: 'x', kind: 'postgres' }).expect(403);
      await service.http().post('/api/v1/groups/api-back-office/revoke').auth(admin, { type: 'bearer' })
        .send({ reason: 'admins do not decide revocations' }).expect(403);
    });

    it('serves health and API docs without a token', async () => {
      const health = await service.http().get('/api/v1/health').expect(200);
      expect(health.body.checks).toEqual({ database: { status: 'up' }, kafka: { status: 'up' } });
      await service.http().get('/api/docs-json').expect(200);
    });
  });

  describe('bad input gets a 4xx and writes nothing', () => {
    // Entries from people only: reports of other specs' adapters on the shared topics arrive meanwhile.
    const auditCount = async () =>
      Number((await service.db.query(`SELECT count(*) FROM audit_entries WHERE actor LIKE 'user:%'`)).rows[0].count);

    it.each([
      ['a missing reason', {}, /reason/],
      ['an empty reason', { reason: '' }, /reason/],
      ['an unknown field', { reason: 'contain INC-1', force: true }, /property force should not exist/],
      ['a reason that is not a string', { reason: 42 }, /reason/],
    ])('revoke with %s → 400', async (_case, body, message) => {
      const before = await auditCount();
      const response = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' })
        .send(body).expect(400);
      expect(JSON.stringify(response.body.message)).toMatch(message);
      expect(await auditCount()).toBe(before);
    });

    it('rejects malformed ids with 400 and unknown ones with 404', async () => {
      await service.http().post('/api/v1/groups/Not_A_Slug/revoke').auth(lead, { type: 'bearer' })
        .send({ reason: 'contain' }).expect(400);
      await service.http().post('/api/v1/groups/no-such-group/revoke').auth(lead, { type: 'bearer' })
        .send({ reason: 'contain' }).expect(404);
      await service.http().get('/api/v1/commands/not-a-uuid').auth(auditor, { type: 'bearer' }).expect(400);
      await service.http().get(`/api/v1/commands/${randomUUID()}`).auth(auditor, { type: 'bearer' }).expect(404);
      await service.http().get('/api/v1/systems/no-such-system').auth(auditor, { type: 'bearer' }).expect(404);
    });

    it('answers 405 with Allow for a method a path does not take, 404 for a path that does not exist', async () => {
      const before = await auditCount();
      const deleted = await service.http().delete('/api/v1/groups/api-back-office').auth(admin, { type: 'bearer' }).expect(405);
      expect(deleted.headers.allow).toBe('GET, HEAD, PUT, OPTIONS');
      expect(deleted.body).toEqual({ statusCode: 405, error: 'method_not_allowed', message: 'DELETE is not allowed here; allowed: GET, HEAD, PUT, OPTIONS' });
      for (const method of ['get', 'head', 'put', 'delete'] as const) {
        const response = await service.http()[method]('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' }).expect(405);
        expect(response.headers.allow).toBe('POST, OPTIONS');
      }
      // OPTIONS asks which methods a path takes.
      const options = await service.http().options('/api/v1/groups/api-back-office/revoke').expect(204);
      expect(options.headers.allow).toBe('POST, OPTIONS');
      // Routes of two patterns match /groups/revoke: the bulk revoke (POST) and a group called "revoke".
      expect((await service.http().patch('/api/v1/groups/revoke').auth(lead, { type: 'bearer' }).expect(405)).headers.allow).toBe('GET, HEAD, POST, PUT, OPTIONS');
      const unknown = await service.http().get('/api/v1/no-such-resource').auth(auditor, { type: 'bearer' }).expect(404);
      expect(unknown.headers.allow).toBeUndefined();
      await service.http().delete('/api/v1/no-such-resource').auth(auditor, { type: 'bearer' }).expect(404);
      expect(await auditCount()).toBe(before);
    });

    it('refuses a group naming an unknown system, and creates nothing', async () => {
      const response = await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
        .send({ id: 'half-group', name: 'Half', systemIds: ['api-ledger', 'ghost-system'] }).expect(400);
      expect(response.body.message).toContain('ghost-system');
      await service.http().get('/api/v1/groups/half-group').auth(admin, { type: 'bearer' }).expect(404);
    });

    it('answers 409 for an id that exists already', async () => {
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .send({ id: 'api-ledger', name: 'again', kind: 'postgres', adapterId: 'api-adapter' }).expect(409);
    });

    it('rejects a body that is not JSON with 400', async () => {
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .set('content-type', 'application/json').send('{"id": ').expect(400);
    });

    // Found by probing the running service: each of these was a 500, or was stored other than it was given.
    it('refuses text with a lone surrogate, which would be stored as U+FFFD, different from what was signed', async () => {
      const before = await auditCount();
      const response = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' })
        .set('content-type', 'application/json').send('{"reason":"lone \\ud800 surrogate"}').expect(400);
      expect(response.body.message).toContain('a lone UTF-16 surrogate');
      const proto = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' })
        .set('content-type', 'application/json').send('{"reason":"contain","__proto__":{"incidentRef":"INC-1"}}').expect(400);
      expect(proto.body.message).toContain('"__proto__" is not a field');
      expect(await auditCount()).toBe(before);
    });

    it('refuses a token whose subject is not storable as given (four eyes compares the subject with the stored requester)', async () => {
      const eve = service.token('eve\ud800', 'security-lead');
      await service.http().post('/api/v1/groups/api-back-office/restore').auth(eve, { type: 'bearer' })
        .send({ reason: 'restore as eve' }).expect(401);
    });

    it('answers 400, not 500, for times, cursors and sequence numbers the database cannot take', async () => {
      const get = (path: string) => service.http().get(path).auth(auditor, { type: 'bearer' });
      expect((await get('/api/v1/audit?from=2024-W01-1').expect(400)).body.message).toEqual(['from must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z']);
      await get(`/api/v1/commands?cursor=9999-99-99T99:99:99.000Z_${randomUUID()}`).expect(400);
      await get('/api/v1/commands?cursor=2024-01-01T00:00:00.000Z_------------------------------------').expect(400);
      await get(`/api/v1/audit/verify?previousSeq=1e30&previousHeadHash=${'a'.repeat(64)}`).expect(400);
      const exemptions = await auditCount();
      await service.http().post('/api/v1/systems/api-stock/exemptions').auth(admin, { type: 'bearer' })
        .send({ principal: 'week-date', reason: 'Break glass for probe', expiresAt: '2030-W01-1' }).expect(400);
      expect(await auditCount()).toBe(exemptions);
    });

    it('takes an exemption whose expiresAt is null as one without expiry', async () => {
      const created = await service.http().post('/api/v1/systems/api-stock/exemptions').auth(admin, { type: 'bearer' })
        .send({ principal: 'no-expiry', reason: 'Permanent break-glass account', expiresAt: null }).expect(201);
      expect(created.body).toMatchObject({ principal: 'no-expiry', expiresAt: null });
    });

    it('registers adapter keys from PEM text only: never reads a file a text names, never takes a private key', async () => {
      const put = (keyId: string, publicKey: string) =>
        service.http().put(`/api/v1/adapters/api-adapter/keys/${keyId}`).auth(admin, { type: 'bearer' }).send({ publicKey });
      const { publicKey, privateKey } = generateKeyPairSync('ed25519');
      const spki = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      // A directory name with the PEM marker in it, and paths long enough to pass the field's length check.
      const dir = mkdtempSync(join(tmpdir(), '-----BEGIN-portcullis-adapter-key-'));
      try {
        writeFileSync(join(dir, 'key.pem'), spki);
        for (const text of [join(dir, 'key.pem'), `${dir}/../${dir.split('/').pop()}/key.pem`, `junk${spki}`, '/etc/../etc/../etc/../etc/../etc/../etc/hostname']) {
          const refused = await put('k-file', text).expect(400);
          expect(refused.body.message).toContain('expected exactly one "-----BEGIN PUBLIC KEY-----" block');
          expect(refused.body.message).not.toMatch(/ENOENT|EISDIR|no such file/);
        }
      } finally {
        rmSync(dir, { recursive: true });
      }
      await put('k-private', privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()).expect(400);
      await service.http().get('/api/v1/adapters/api-adapter/keys').auth(admin, { type: 'bearer' }).expect(200)
        .then((listed) => expect(JSON.stringify(listed.body)).not.toMatch(/k-file|k-private/));
    });

    it('registers the same adapter key sent three times at once: the same answer three times, one key, one audit entry', async () => {
      const spki = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const answers = await Promise.all(
        [1, 2, 3].map(() => service.http().put('/api/v1/adapters/api-adapter/keys/k-concurrent').auth(admin, { type: 'bearer' }).send({ publicKey: spki })),
      );
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
      expect(new Set(answers.map((answer) => answer.body.fingerprint)).size).toBe(1);
      const { rows } = await service.db.query(
        `SELECT count(*)::int AS count FROM audit_entries WHERE action = 'adapter-key.registered' AND details->>'keyId' = 'k-concurrent'`,
      );
      expect(rows[0].count).toBe(1);
    });

    it('answers the same name for two API keys created at once with one key and a 409 that says why', async () => {
      const answers = await Promise.all(
        [1, 2, 3].map(() => service.http().post('/api/v1/api-keys').auth(admin, { type: 'bearer' }).send({ name: 'concurrent-key', roles: ['auditor'] })),
      );
      expect(answers.map((answer) => answer.status).sort()).toEqual([201, 409, 409]);
      for (const refused of answers.filter((answer) => answer.status === 409)) {
        expect(refused.body.message).toBe('API key named "concurrent-key" already exists');
      }
    });
  });

  describe('decisions', () => {
    const commandAsRead = async (id: string) =>
      (await service.http().get(`/api/v1/commands/${id}`).auth(auditor, { type: 'bearer' }).expect(200)).body;

    it('publishes one event per changed system, with growing generations, and never re-publishes a repeat', async () => {
      const revoke = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' })
        .send({ reason: 'Back-office credentials leaked', incidentRef: 'INC-7' }).expect(202);
      const commandId: string = revoke.body.commandId;
      expect(revoke.body.command.systems.map((s: { systemId: string }) => s.systemId)).toEqual(['api-crm', 'api-ledger']);
      // The answer is built from the transaction's own rows: exactly what reading the command gives (no adapter acknowledges here).
      expect(await commandAsRead(commandId)).toEqual(revoke.body.command);

      const events = await eventually(() => {
        const mine = published.filter((event) => event.commandId === commandId);
        expect(mine).toHaveLength(2);
        return mine;
      });
      for (const event of events) {
        expect(event.generation).toBe(1);
        expect(event.data).toMatchObject({ desiredState: 'revoked', action: 'revoke', incidentRef: 'INC-7', requestedBy: 'alice' });
        expect(event.data.exemptPrincipals).toEqual(['breakglass']);
      }

      const repeat = await service.http().post('/api/v1/groups/api-back-office/revoke').auth(lead, { type: 'bearer' })
        .send({ reason: 'again' }).expect(200);
      expect(repeat.body).toMatchObject({ accepted: false, commandId });
      const outbox = await service.db.query('SELECT count(*)::int AS count FROM outbox');
      expect(outbox.rows[0].count).toBe(2);
    });

    it('keeps a system covered by another revoked group revoked when one group is restored', async () => {
      const finance = await service.http().post('/api/v1/groups/api-finance/revoke').auth(lead, { type: 'bearer' })
        .send({ reason: 'Finance too' }).expect(202);
      // api-ledger is already revoked by back-office: nothing new to publish for it.
      expect(finance.body.command.systems).toEqual([
        expect.objectContaining({ systemId: 'api-ledger', changed: false, generation: 1 }),
      ]);

      // Four eyes: alice's restore is a request; bob, another security lead, approves it and it applies.
      const request = await service.http().post('/api/v1/groups/api-back-office/restore').auth(lead, { type: 'bearer' })
        .send({ reason: 'Credentials rotated' }).expect(202);
      expect(request.body).toMatchObject({ status: 'awaiting-approval', command: { systems: [] } });
      expect(await commandAsRead(request.body.commandId)).toEqual(request.body.command);
      const restore = await service.http().post(`/api/v1/commands/${request.body.commandId}/approve`)
        .auth(service.token('bob', 'security-lead'), { type: 'bearer' }).send({}).expect(200);
      expect(await commandAsRead(request.body.commandId)).toEqual(restore.body.command);
      const systems = restore.body.command.systems;
      expect(systems).toEqual([
        expect.objectContaining({ systemId: 'api-crm', changed: true, desiredState: 'active', generation: 2 }),
        expect.objectContaining({ systemId: 'api-ledger', changed: false, desiredState: 'revoked' }),
      ]);
      expect(systems[1].detail).toContain('api-finance');

      const ledger = await service.http().get('/api/v1/systems/api-ledger').auth(auditor, { type: 'bearer' }).expect(200);
      expect(ledger.body).toMatchObject({ desiredState: 'revoked', generation: 1 });
      await eventually(() => {
        const crm = published.filter((event) => event.data.systemId === 'api-crm').map((event) => event.generation);
        expect(crm).toEqual([1, 2]);
      });
    });

    it('refuses to change the membership of a revoked group (409) but allows a rename', async () => {
      await service.http().put('/api/v1/groups/api-finance').auth(admin, { type: 'bearer' })
        .send({ name: 'Finance', systemIds: [] }).expect(409);
      const renamed = await service.http().put('/api/v1/groups/api-finance').auth(admin, { type: 'bearer' })
        .send({ name: 'Finance and payroll', systemIds: ['api-ledger'] }).expect(200);
      expect(renamed.body).toMatchObject({ name: 'Finance and payroll', state: 'revoked' });
    });

    it('shows pending commands as overdue once their deadline passes', async () => {
      await service.db.query(`UPDATE commands SET acknowledge_by = now() - interval '1 second'`);
      const list = await service.http().get('/api/v1/commands?groupId=api-back-office').auth(auditor, { type: 'bearer' }).expect(200);
      expect(list.body.items.map((command: { status: string }) => command.status)).toEqual(['overdue', 'overdue']);
      expect(list.body.items[0].systems.find((s: { systemId: string }) => s.systemId === 'api-crm').overdue).toBe(true);
    });

    it('records every decision in the audit history with actor, reason and incident, filterable', async () => {
      const history = await service.http().get('/api/v1/audit?groupId=api-back-office&actor=user:alice').auth(auditor, { type: 'bearer' }).expect(200);
      const actions = history.body.items.map((entry: { action: string }) => entry.action);
      expect(actions).toEqual(['restore.requested', 'group.revoke.repeated', 'group.revoked']);
      const approval = await service.http().get('/api/v1/audit?groupId=api-back-office&actor=user:bob').auth(auditor, { type: 'bearer' }).expect(200);
      expect(approval.body.items.map((entry: { action: string }) => entry.action)).toEqual(['group.restored', 'restore.approved']);
      expect(history.body.items[2]).toMatchObject({ reason: 'Back-office credentials leaked', incidentRef: 'INC-7' });

      const page = await service.http().get('/api/v1/audit?limit=2').auth(auditor, { type: 'bearer' }).expect(200);
      expect(page.body.items).toHaveLength(2);
      const next = await service.http().get(`/api/v1/audit?limit=2&cursor=${page.body.nextCursor}`).auth(auditor, { type: 'bearer' }).expect(200);
      expect(next.body.items[0].id).toBeLessThan(page.body.items[1].id);
    });

    it('keeps the audit history append-only even for the service itself', async () => {
      await expect(service.db.query(`UPDATE audit_entries SET reason = 'edited'`)).rejects.toThrow(/append-only/);
      await expect(service.db.query('DELETE FROM audit_entries')).rejects.toThrow(/append-only/);
    });
  });
});
