import { Logger } from '@nestjs/common';
import { generateSigningKeyPair, publicKeyPem } from '@portcullis/contracts';
import { createScratchDatabase, startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, type PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { eventually } from '@test/support/eventually';
import { runAuditVerify } from '../../../scripts/audit-verify';
import { chainEntryHash, ChainVerifier, GENESIS_HASH, trustKeys } from '../src/audit/audit-chain';
import { AuditLog } from '../src/audit/audit-log.service';
import { AuditTrail, CHECKPOINT_LOCK_KEY, entryOf, type EntryRow } from '../src/audit/audit-trail.service';
import { runPolicyServiceMigrations } from '../src/database/database.module';
import { policyServiceMigrations } from '../src/database/migrations';

const ROOT = resolve(__dirname, '../../..');

/**
 * The audit trail an auditor can verify, against a real PostgreSQL: the service's role can only append,
 * the hash chain pinpoints edited, deleted and reordered entries, checkpoints are signed, and an export
 * verifies offline (and fails when cut short or edited).
 */
/** The whole JSON Lines export, as the auditor downloads it. */
async function exportJsonl(service: RunningPolicyService, auditor: string): Promise<string[]> {
  const response = await service.http().get('/api/v1/audit/export?format=jsonl').auth(auditor, { type: 'bearer' })
    .buffer(true)
    .parse((res, done) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => done(null, text));
    })
    .expect(200);
  expect(response.headers['content-type']).toMatch(/application\/x-ndjson/);
  return (response.body as string).split('\n').filter((line) => line !== '');
}

function writeExport(dir: string, name: string, lines: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** The offline verifier (`npm run audit:verify`), in-process, with what it printed. */
async function verifyOffline(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runAuditVerify(args, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('audit trail', () => {
  const env = readTestEnv();
  let service: RunningPolicyService;
  let admin: string;
  let lead: string;
  let auditor: string;
  let dir: string;
  let publicKeyFile: string;

  const verify = async () => (await service.http().get('/api/v1/audit/verify').auth(auditor, { type: 'bearer' }).expect(200)).body;

  /** As the superuser, with the append-only triggers off for this transaction: an attacker with full access. */
  const tamper = async (...statements: [string, unknown[]?][]) => {
    const client: PoolClient = await service.db.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      for (const [sql, params] of statements) await client.query(sql, params);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
  };

  /** A seq well inside the chain, written by this spec (not by another spec's adapter reports). */
  const seqOf = async (action: string, offset = 0): Promise<number> => {
    const { rows } = await service.db.query(`SELECT seq FROM audit_entries WHERE action = $1 ORDER BY seq OFFSET $2 LIMIT 1`, [action, offset]);
    return Number(rows[0].seq);
  };


  beforeAll(async () => {
    service = await startPolicyService(env);
    admin = service.token('ada', 'admin');
    lead = service.token('alice', 'security-lead');
    auditor = service.token('audrey', 'auditor');
    dir = mkdtempSync(join(tmpdir(), 'audit-trail-'));
    publicKeyFile = join(dir, 'policy.pub.pem');
    writeFileSync(publicKeyFile, publicKeyPem(service.config.signing.privateKey));

    for (const id of ['at-ledger', 'at-crm', 'at-stock', 'at-hr']) {
      await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' })
        .send({ id, name: `${id}, "the" system`, kind: 'postgres', adapterId: 'at-adapter' }).expect(201);
    }
    await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
      .send({ id: 'at-back-office', name: 'Back office', systemIds: ['at-ledger', 'at-crm'] }).expect(201);
    await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
      .send({ id: 'at-warehouse', name: 'Warehouse', systemIds: ['at-stock'] }).expect(201);
    await service.http().put('/api/v1/groups/at-warehouse').auth(admin, { type: 'bearer' })
      .send({ name: 'Warehouse and HR', systemIds: ['at-stock', 'at-hr'] }).expect(200);
    await service.http().post('/api/v1/groups/at-back-office/revoke').auth(lead, { type: 'bearer' })
      .send({ reason: 'Back-office credentials phished, "urgent"', incidentRef: 'INC-2041' }).expect(202);
    await service.http().post('/api/v1/groups/at-warehouse/revoke').auth(lead, { type: 'bearer' })
      .send({ reason: '=cmd|calc — a reason a spreadsheet must not run', incidentRef: 'INC-2042' }).expect(202);
    expect(await service.app.get(AuditTrail).writeCheckpoint()).toMatchObject({ keyId: service.config.signing.keyId });
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('chains every entry: seq without gaps, each linked to the one before, times to the millisecond', async () => {
    const { rows } = await service.db.query(
      `SELECT seq, prev_hash, hash, occurred_at = date_trunc('milliseconds', occurred_at) AS ms FROM audit_entries ORDER BY seq`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(9);
    rows.forEach((row, i) => {
      expect(Number(row.seq)).toBe(i + 1);
      expect(row.prev_hash).toBe(i === 0 ? '0'.repeat(64) : rows[i - 1].hash);
      expect(row.ms).toBe(true);
    });
    const page = await service.http().get('/api/v1/audit?groupId=at-back-office').auth(auditor, { type: 'bearer' }).expect(200);
    expect(page.body.items[0]).toMatchObject({ action: 'group.revoked', seq: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(page.body.items[0]).toHaveProperty('sourceAddress');
  });

  it('verifies intact, with the signed checkpoint, for auditors and admins only', async () => {
    const report = await verify();
    expect(report).toMatchObject({ intact: true, breaks: 0, headHash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(report.entries).toBe(report.headSeq);
    expect(report.checkpoints).toBeGreaterThanOrEqual(1);
    expect(report.firstBreak).toBeUndefined();
    await service.http().get('/api/v1/audit/verify').auth(admin, { type: 'bearer' }).expect(200);
    await service.http().get('/api/v1/audit/verify').auth(lead, { type: 'bearer' }).expect(403);
    await service.http().get('/api/v1/audit/export').auth(lead, { type: 'bearer' }).expect(403);
    await service.http().get('/api/v1/audit/verify').expect(401);
    const keys = await service.http().get('/api/v1/audit/keys').auth(auditor, { type: 'bearer' }).expect(200);
    expect(keys.body.keys).toEqual([
      { keyId: service.config.signing.keyId, algorithm: 'Ed25519', publicKeyPem: publicKeyPem(service.config.signing.privateKey) },
    ]);
  });

  it('links entries when their transaction commits: in append order, commit time, the hash the application computes', async () => {
    const auditLog = service.app.get(AuditLog);
    const dataSource = service.app.get(DataSource);
    // Text the database must hash exactly as the application does (its canonical JSON is cut around the time and seq).
    const tricky = '"occurredAt":"x","seq":1 \\ \u0001 \n é 東京 🚨 \u2028 \ud800 (lone surrogate)';
    // A command id in upper case: the hash must cover the text the uuid column gives back.
    const commandId = '6F1C1C1E-0000-4000-8000-00000000000A';
    const appended = (i: number, part: string) =>
      ({ actor: 'system', action: 'test.linked', commandId, reason: `${i} ${part} ${tricky}`, details: { i, part, tricky } });
    // Concurrent transactions, each appending twice; one of them rolls back. Session settings that change how
    // times print must not change what is hashed.
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        dataSource.transaction(async (manager) => {
          await manager.query(`SET LOCAL TimeZone = 'Pacific/Chatham'`);
          await manager.query(`SET LOCAL DateStyle = 'SQL, DMY'`);
          await auditLog.append(manager, appended(i, 'first'));
          await manager.query('SELECT pg_sleep(0.01 * random())');
          await auditLog.append(manager, [appended(i, 'second'), appended(i, 'third')]);
          if (i === 5) throw new Error('rolled back');
        }),
      ),
    );
    expect(results.filter((result) => result.status === 'rejected')).toHaveLength(1);
    const { rows } = await service.db.query(
      `SELECT seq, occurred_at, command_id, details FROM audit_entries WHERE action = 'test.linked' ORDER BY seq`,
    );
    expect(rows).toHaveLength(7 * 3);
    expect(rows.some((row) => row.details.i === 5)).toBe(false);
    for (let at = 0; at < rows.length; at += 3) {
      // A transaction's entries are consecutive, in the order appended; an append's entries share a time.
      const [first, second, third] = rows.slice(at, at + 3);
      expect([first.details.part, second.details.part, third.details.part]).toEqual(['first', 'second', 'third']);
      expect(new Set([first, second, third].map((row) => row.details.i)).size).toBe(1);
      expect([Number(second.seq), Number(third.seq)]).toEqual([Number(first.seq) + 1, Number(first.seq) + 2]);
      expect(third.occurred_at).toEqual(second.occurred_at);
    }
    // Times follow the chain.
    rows.slice(1).forEach((row, i) => expect(row.occurred_at.getTime()).toBeGreaterThanOrEqual(rows[i].occurred_at.getTime()));
    expect(rows[0].details.tricky).toBe(tricky.replace('\ud800', '\ufffd'));
    expect((await service.db.query('SELECT count(*)::int AS n FROM audit_pending')).rows[0].n).toBe(0);
    expect(await verify()).toMatchObject({ intact: true, breaks: 0 });
  });

  it('holds no lock while a transaction that appended is still open: a later one commits first, and is first in the chain', async () => {
    const auditLog = service.app.get(AuditLog);
    const open = service.app.get(DataSource).createQueryRunner();
    await open.connect();
    try {
      await open.startTransaction();
      await auditLog.append(open.manager, { actor: 'system', action: 'test.open-first', details: {} });
      // Under a lock taken at append time this would wait for the open transaction (and fail on the lock timeout).
      await service.app.get(DataSource).transaction(async (manager) => {
        await manager.query(`SET LOCAL lock_timeout = '5s'`);
        await auditLog.append(manager, { actor: 'system', action: 'test.committed-first', details: {} });
      });
      await open.commitTransaction();
    } finally {
      await open.release();
    }
    const { rows } = await service.db.query(`SELECT action FROM audit_entries WHERE action LIKE 'test.%-first' ORDER BY seq`);
    expect(rows.map((row) => row.action)).toEqual(['test.committed-first', 'test.open-first']);
  });

  it('links into the real chain even where a session made temporary tables of the same names', async () => {
    const auditLog = service.app.get(AuditLog);
    await service.app.get(DataSource).transaction(async (manager) => {
      await manager.query('CREATE TEMP TABLE audit_entries (LIKE public.audit_entries) ON COMMIT DROP');
      await manager.query('CREATE TEMP TABLE audit_chain_head (LIKE public.audit_chain_head) ON COMMIT DROP');
      await auditLog.append(manager, { actor: 'system', action: 'test.shadowed', details: {} });
    });
    const { rows } = await service.db.query(`SELECT seq FROM audit_entries WHERE action = 'test.shadowed'`);
    expect(rows).toHaveLength(1);
    expect(await verify()).toMatchObject({ intact: true, breaks: 0 });
  });

  it('runs the service as a role that cannot update, delete or truncate the history', async () => {
    const app = new Client({ connectionString: service.config.databaseUrl });
    await app.connect();
    try {
      const { rows } = await app.query('SELECT current_user AS role, rolsuper FROM pg_roles WHERE rolname = current_user');
      expect(rows[0]).toMatchObject({ role: expect.stringMatching(/^portcullis_service_/), rolsuper: false });
      for (const table of ['audit_entries', 'audit_checkpoints']) {
        await expect(app.query(`UPDATE ${table} SET seq = seq`)).rejects.toThrow(/permission denied/);
        await expect(app.query(`DELETE FROM ${table}`)).rejects.toThrow(/permission denied/);
        await expect(app.query(`TRUNCATE ${table}`)).rejects.toThrow(/permission denied/);
      }
      await expect(app.query('DELETE FROM audit_chain_head')).rejects.toThrow(/permission denied/);
      await expect(app.query(`ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only`)).rejects.toThrow(/must be owner/);
      // ... while the ordinary tables stay writable for it.
      await app.query(`UPDATE systems SET updated_at = updated_at WHERE id = 'at-hr'`);
    } finally {
      await app.end();
    }
  });

  it('pinpoints an entry edited in the database', async () => {
    const seq = await seqOf('group.revoked');
    const { rows } = await service.db.query('SELECT reason FROM audit_entries WHERE seq = $1', [seq]);
    await tamper([`UPDATE audit_entries SET reason = 'Routine maintenance' WHERE seq = $1`, [seq]]);
    try {
      expect(await verify()).toMatchObject({ intact: false, firstBreak: { seq, reason: 'hash-mismatch' } });
    } finally {
      await tamper([`UPDATE audit_entries SET reason = $2 WHERE seq = $1`, [seq, rows[0].reason]]);
    }
    expect((await verify()).intact).toBe(true);
  });

  it('never signs a checkpoint over entries that no longer chain', async () => {
    const trail = service.app.get(AuditTrail);
    await trail.writeCheckpoint();
    await service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' }).send({ id: 'at-extra', name: 'x', kind: 'postgres', adapterId: 'at-adapter' }).expect(201);
    const { rows } = await service.db.query(
      `SELECT seq, details::text AS details FROM audit_entries WHERE action = 'system.registered' AND system_id = 'at-extra'`,
    );
    const seq = Number(rows[0].seq);
    await tamper([`UPDATE audit_entries SET details = '{"after":{"name":"y"}}' WHERE seq = $1`, [seq]]);
    try {
      expect(await trail.writeCheckpoint()).toBeNull();
    } finally {
      await tamper([`UPDATE audit_entries SET details = $2::jsonb WHERE seq = $1`, [seq, rows[0].details]]);
    }
    expect((await verify()).intact).toBe(true);
    expect(await trail.writeCheckpoint()).toMatchObject({ seq: expect.any(Number) });
  });

  it('reports a deleted entry as a gap at its seq', async () => {
    const seq = await seqOf('group.created', 1);
    const { rows } = await service.db.query('SELECT * FROM audit_entries WHERE seq = $1', [seq]);
    await tamper([`DELETE FROM audit_entries WHERE seq = $1`, [seq]]);
    try {
      expect(await verify()).toMatchObject({ intact: false, firstBreak: { seq, reason: 'gap', expected: seq, actual: seq + 1 } });
    } finally {
      const row = rows[0];
      const columns = Object.keys(row);
      await tamper([
        `INSERT INTO audit_entries (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`,
        columns.map((column) => (column === 'details' ? JSON.stringify(row[column]) : row[column])),
      ]);
    }
    expect((await verify()).intact).toBe(true);
  });

  it('reports reordered entries at the first one moved', async () => {
    const first = await seqOf('system.registered', 1);
    const second = first + 2;
    const swap: [string, unknown[]][] = [
      ['UPDATE audit_entries SET seq = seq + 1000000000 WHERE seq = $1', [first]],
      ['UPDATE audit_entries SET seq = $1 WHERE seq = $2', [first, second]],
      ['UPDATE audit_entries SET seq = $1 WHERE seq = $2', [second, first + 1000000000]],
    ];
    await tamper(...swap);
    try {
      expect(await verify()).toMatchObject({ intact: false, firstBreak: { seq: first, reason: 'link-mismatch' } });
    } finally {
      await tamper(...swap);
    }
    expect((await verify()).intact).toBe(true);
  });

  it('rejects a checkpoint that is not signed by the service', async () => {
    const seq = await seqOf('group.created');
    const { rows } = await service.db.query('SELECT hash FROM audit_entries WHERE seq = $1', [seq]);
    await service.db.query(
      `INSERT INTO audit_checkpoints (seq, head_hash, created_at, key_id, signature) VALUES ($1, $2, date_trunc('milliseconds', now()), $3, $4)`,
      [seq, rows[0].hash, service.config.signing.keyId, 'Zm9yZ2Vk'],
    );
    try {
      expect(await verify()).toMatchObject({ intact: false, firstBreak: { seq, reason: 'checkpoint-signature' } });
    } finally {
      await tamper(['DELETE FROM audit_checkpoints WHERE seq = $1', [seq]]);
    }
    expect((await verify()).intact).toBe(true);
  });

  describe('export', () => {
    let lines: string[];

    beforeAll(async () => {
      await service.app.get(AuditTrail).writeCheckpoint();
      lines = await exportJsonl(service, auditor);
    });

    it('is JSON Lines: a header with the public key, entries and checkpoints in chain order, a signed trailer', () => {
      const parsed = lines.map((line) => JSON.parse(line));
      expect(parsed[0]).toMatchObject({ kind: 'header', format: 'portcullis-audit-export', version: 1 });
      expect(parsed[0].keys[0].publicKeyPem).toBe(publicKeyPem(service.config.signing.privateKey));
      const entries = parsed.filter((line) => line.kind === 'entry');
      expect(entries.map((entry) => entry.seq)).toEqual(entries.map((_, i) => i + 1));
      expect(parsed.filter((line) => line.kind === 'checkpoint').length).toBeGreaterThanOrEqual(2);
      expect(parsed[parsed.length - 1]).toMatchObject({ kind: 'end', entries: entries.length, lastSeq: entries.length, signature: expect.any(String) });
    });

    it('verifies offline with the service\'s public key, and warns when only the export\'s own key is used', async () => {
      const file = writeExport(dir, 'complete.jsonl', lines);
      const trusted = await verifyOffline([file, '--public-key', publicKeyFile]);
      expect(trusted).toMatchObject({ code: 0 });
      expect(trusted.out).toContain('VERDICT: INTACT');
      expect(trusted.err).not.toContain('WARNING');
      const selfTrusted = await verifyOffline([file]);
      expect(selfTrusted.code).toBe(0);
      expect(selfTrusted.err).toMatch(/WARNING.*key IN THE EXPORT ITSELF/);
    });

    it('fails offline for an export cut short or edited, naming the place', async () => {
      const truncated = await verifyOffline([writeExport(dir, 'truncated.jsonl', lines.slice(0, -2)), '--public-key', publicKeyFile]);
      expect(truncated.code).toBe(1);
      expect(truncated.out).toMatch(/VERDICT: BROKEN/);
      expect(truncated.out).toMatch(/reason:\s+(truncated|checkpoint-mismatch)/);

      const index = lines.findIndex((line) => line.includes('"action":"group.revoked"'));
      const seq = JSON.parse(lines[index]).seq;
      const edited = [...lines];
      edited[index] = edited[index].replace('INC-2041', 'INC-0000');
      const tampered = await verifyOffline([writeExport(dir, 'edited.jsonl', edited), '--public-key', publicKeyFile]);
      expect(tampered.code).toBe(1);
      expect(tampered.out).toContain(`seq:      ${seq} (line ${index + 1})`);
      expect(tampered.out).toMatch(/reason:\s+hash-mismatch/);

      const otherKey = join(dir, 'other.pub.pem');
      writeFileSync(otherKey, generateSigningKeyPair().publicKeyPem);
      const wrongKey = await verifyOffline([writeExport(dir, 'complete2.jsonl', lines), '--public-key', otherKey]);
      expect(wrongKey.code).toBe(1);
      expect(wrongKey.out).toMatch(/reason:\s+checkpoint-signature/);
    });

    it('runs as a command: npm run audit:verify (tsx scripts/audit-verify.ts)', async () => {
      const run = (args: string[]) =>
        new Promise<{ code: number; stdout: string }>((done) => {
          execFile(process.execPath, [require.resolve('tsx/cli'), 'scripts/audit-verify.ts', ...args], { cwd: ROOT }, (error, stdout) =>
            done({ code: error ? Number((error as NodeJS.ErrnoException & { code?: unknown }).code ?? 1) : 0, stdout }),
          );
        });
      const ok = await run([writeExport(dir, 'cli.jsonl', lines), '--public-key', publicKeyFile]);
      expect(ok).toMatchObject({ code: 0, stdout: expect.stringContaining('VERDICT: INTACT') });
      const cut = await run([writeExport(dir, 'cli-cut.jsonl', lines.slice(0, -1)), '--public-key', publicKeyFile]);
      expect(cut).toMatchObject({ code: 1, stdout: expect.stringContaining('VERDICT: BROKEN') });
    });

    it('exports CSV for spreadsheets, one escaped row per entry with its hashes', async () => {
      const response = await service.http().get('/api/v1/audit/export?format=csv').auth(auditor, { type: 'bearer' }).expect(200);
      expect(response.headers['content-type']).toMatch(/text\/csv/);
      const csv: string = response.text;
      expect(csv.startsWith('seq,occurred_at,actor,action,group_id,system_id,command_id,reason,incident_ref,source_address,details,prev_hash,hash\r\n')).toBe(true);
      expect(csv).toContain('"Back-office credentials phished, ""urgent"""');
      expect(csv).toContain(`'=cmd|calc`);
      const entries = lines.filter((line) => line.includes('"kind":"entry"')).map((line) => JSON.parse(line));
      for (const entry of entries) expect(csv).toContain(`,${entry.prevHash},${entry.hash}\r\n`);
      await service.http().get('/api/v1/audit/export?format=xml').auth(auditor, { type: 'bearer' }).expect(400);
    });
  });

  it('detects entries cut off the end (last test: the service is stopped to hold the chain still)', async () => {
    await service.app.get(AuditTrail).writeCheckpoint();
    await service.stop();
    const { rows } = await service.db.query('SELECT seq FROM audit_chain_head');
    const head = Number(rows[0].seq);
    await tamper(['DELETE FROM audit_entries WHERE seq = $1', [head]]);
    await service.restart();
    const report = await verify();
    expect(report.intact).toBe(false);
    expect(report.firstBreak.seq).toBe(head);
    expect(['checkpoint-mismatch', 'head-mismatch', 'gap']).toContain(report.firstBreak.reason);
  });
});

/**
 * The attack a hash chain alone cannot see: a database superuser edits an early entry, RE-HASHES every entry
 * after it (SHA-256 needs no key), moves the stored head and deletes the checkpoints at or after the edit.
 * The database then verifies on its own. What still catches it: the running service's checkpoint writer,
 * which remembers what it verified and signed and refuses to sign over the rewrite, and an export taken
 * before the attack, which the new export must extend (`audit:verify new --previous old`).
 */
describe('audit trail rewritten and re-hashed by a database superuser', () => {
  const env = readTestEnv();
  let service: RunningPolicyService;
  let admin: string;
  let auditor: string;
  let dir: string;
  let publicKeyFile: string;
  let loggedErrors: jest.SpyInstance;

  const trail = () => service.app.get(AuditTrail);
  const verify = async (query = '') =>
    (await service.http().get(`/api/v1/audit/verify${query}`).auth(auditor, { type: 'bearer' }).expect(200)).body;
  const headSeq = async () => Number((await service.db.query('SELECT seq FROM audit_chain_head')).rows[0].seq);
  const register = (id: string) =>
    service.http().post('/api/v1/systems').auth(admin, { type: 'bearer' }).send({ id, name: id, kind: 'postgres', adapterId: 'rw-adapter' }).expect(201);
  /** Until the writer (ticking every 200 ms) has signed the current head. */
  const checkpointed = () =>
    eventually(async () => {
      expect(trail().writerState()).toMatchObject({ healthy: true, status: 'ready', lastCheckpointSeq: await headSeq() });
    }, 10_000);

  /**
   * The rewrite, as a careful superuser: triggers off, the chain head locked (no append in between) and the
   * checkpoint writer's lock held (it cannot sign in between); entry `seq` edited, every later entry
   * re-hashed exactly as audit-chain.ts hashes, the head moved, the checkpoints at or after `seq` deleted.
   */
  const rewriteHistory = async (seq: number) => {
    const client = await service.db.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('SELECT pg_advisory_xact_lock($1)', [CHECKPOINT_LOCK_KEY]);
      await client.query('SELECT seq FROM audit_chain_head FOR UPDATE');
      await client.query(`UPDATE audit_entries SET reason = 'Routine maintenance' WHERE seq = $1`, [seq]);
      const { rows } = await client.query(
        `SELECT seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref, source_address, details, prev_hash
         FROM audit_entries WHERE seq >= $1 ORDER BY seq`,
        [seq],
      );
      let prevHash: string = rows[0].prev_hash;
      for (const row of rows) {
        const hash = chainEntryHash(prevHash, {
          seq: Number(row.seq),
          occurredAt: (row.occurred_at as Date).toISOString(),
          actor: row.actor,
          action: row.action,
          groupId: row.group_id,
          systemId: row.system_id,
          commandId: row.command_id,
          reason: row.reason,
          incidentRef: row.incident_ref,
          sourceAddress: row.source_address,
          details: row.details,
        });
        await client.query('UPDATE audit_entries SET prev_hash = $2, hash = $3 WHERE seq = $1', [row.seq, prevHash, hash]);
        prevHash = hash;
      }
      await client.query('UPDATE audit_chain_head SET hash = $1', [prevHash]);
      const deleted = await client.query('DELETE FROM audit_checkpoints WHERE seq >= $1', [seq]);
      await client.query('COMMIT');
      return { deletedCheckpoints: deleted.rowCount ?? 0 };
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
  };

  let before: string;
  let beforeTrailer: { lastSeq: number; headHash: string };
  let rewritten: number;

  beforeAll(async () => {
    loggedErrors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    service = await startPolicyService(env, { auditCheckpointIntervalMs: 200 });
    admin = service.token('ada', 'admin');
    auditor = service.token('audrey', 'auditor');
    dir = mkdtempSync(join(tmpdir(), 'audit-rewrite-'));
    publicKeyFile = join(dir, 'policy.pub.pem');
    writeFileSync(publicKeyFile, publicKeyPem(service.config.signing.privateKey));
    for (const id of ['rw-ledger', 'rw-crm', 'rw-stock', 'rw-hr']) await register(id);
    await service.http().post('/api/v1/groups').auth(admin, { type: 'bearer' })
      .send({ id: 'rw-back-office', name: 'Back office', systemIds: ['rw-ledger', 'rw-crm'] }).expect(201);
    await checkpointed();
    // The auditor's export, kept off-site.
    const lines = await exportJsonl(service, auditor);
    before = writeExport(dir, 'before.jsonl', lines);
    beforeTrailer = JSON.parse(lines[lines.length - 1]);
    expect((await verifyOffline([before, '--public-key', publicKeyFile])).code).toBe(0);
    // Life goes on, and is signed.
    for (const id of ['rw-crm-2', 'rw-stock-2']) await register(id);
    await checkpointed();
  });

  afterAll(async () => {
    loggedErrors?.mockRestore();
    await service?.stop();
    await service?.db.end();
  });

  it('the running checkpoint writer refuses to sign over the rewrite, logs an ERROR, and verify reports it', async () => {
    const { rows } = await service.db.query(`SELECT seq FROM audit_entries WHERE action = 'system.registered' ORDER BY seq OFFSET 1 LIMIT 1`);
    rewritten = Number(rows[0].seq);
    expect(rewritten).toBeLessThan(beforeTrailer.lastSeq);
    const { count: signedBefore } = (await service.db.query('SELECT count(*)::int AS count FROM audit_checkpoints')).rows[0];
    const { deletedCheckpoints } = await rewriteHistory(rewritten);
    expect(deletedCheckpoints).toBeGreaterThanOrEqual(2);
    const attackedHead = await headSeq();

    const report = await eventually(async () => {
      const body = await verify();
      expect(body.checkpointWriter).toMatchObject({ healthy: false, status: 'refusing', problem: { reason: expect.stringMatching(/^(entry-changed|checkpoint-missing)$/) } });
      return body;
    }, 10_000);
    // The chain itself verifies (the rewrite is self-consistent): only the writer's memory disagrees.
    expect(report).toMatchObject({ intact: false, breaks: 1, headSeq: attackedHead, firstBreak: { reason: report.checkpointWriter.problem.reason } });
    expect(report.checkpointWriter.problem.seq).toBeGreaterThanOrEqual(rewritten);
    expect(report.checkpointWriter.problem.detail).toMatch(/rewritten|deleted/);
    expect(report.checkpointWriter.lastCheckpointSeq).toBeGreaterThanOrEqual(rewritten);

    // New entries come in; the writer still signs nothing (directly, nor on its 200 ms interval).
    await register('rw-after-attack');
    expect(await trail().writeCheckpoint()).toBeNull();
    // Every refused attempt is an ERROR in the log: wait for a few of the writer's own ticks to refuse too.
    const refusals = () => loggedErrors.mock.calls.filter(([message]) => /refuses to sign/.test(String(message))).length;
    const seen = refusals();
    expect(seen).toBeGreaterThanOrEqual(1);
    await eventually(() => expect(refusals()).toBeGreaterThanOrEqual(seen + 3), 10_000);
    expect(await trail().writeCheckpoint()).toBeNull();
    const { rows: signed } = await service.db.query('SELECT seq FROM audit_checkpoints WHERE seq >= $1', [rewritten]);
    expect(signed).toEqual([]);
    expect((await service.db.query('SELECT count(*)::int AS count FROM audit_checkpoints')).rows[0].count).toBe(signedBefore - deletedCheckpoints);

    // An export made now says so under the service's signature, and fails offline even on its own.
    const during = await verifyOffline([writeExport(dir, 'during.jsonl', await exportJsonl(service, auditor)), '--public-key', publicKeyFile]);
    expect(during.code).toBe(1);
    expect(during.out).toMatch(/reason:\s+checkpoint-writer/);
    // The head the auditor kept is no longer on the chain.
    const online = await verify(`?previousSeq=${beforeTrailer.lastSeq}&previousHeadHash=${beforeTrailer.headHash}`);
    expect(online).toMatchObject({ intact: false, previous: { seq: beforeTrailer.lastSeq, onChain: false } });
  });

  it('after a restart the rewrite verifies (the memory is gone), but not against the export taken before', async () => {
    await service.stop();
    await service.restart();
    // What a single database cannot prove about itself: the restarted service verifies the whole chain and
    // signs on over the rewritten history.
    await register('rw-after-restart');
    await checkpointed();
    expect(await verify()).toMatchObject({ intact: true, checkpointWriter: { healthy: true } });
    const after = writeExport(dir, 'after.jsonl', await exportJsonl(service, auditor));
    const alone = await verifyOffline([after, '--public-key', publicKeyFile]);
    expect(alone).toMatchObject({ code: 0, out: expect.stringContaining('VERDICT: INTACT') });

    // Against the export kept from before, the rewrite shows at the entry that was edited.
    const compared = await verifyOffline([after, '--previous', before, '--public-key', publicKeyFile]);
    expect(compared.code).toBe(1);
    expect(compared.out).toContain('VERDICT: INCONSISTENT');
    expect(compared.out).toMatch(new RegExp(`seq:\\s+${rewritten} \\(line \\d+; previous export line \\d+\\)`));
    expect(compared.out).toMatch(/reason:\s+entry-changed/);
    expect(compared.out).toMatch(/detail:.*\(reason, hash\)/);
    const json = JSON.parse((await verifyOffline([after, '--previous', before, '--public-key', publicKeyFile, '--json'])).out);
    expect(json).toMatchObject({
      intact: true,
      consistency: {
        consistent: false,
        headOnChain: false,
        previous: { intact: true },
        firstProblem: { seq: rewritten, reason: 'entry-changed' },
      },
    });
    expect(json.consistency.checkpointsMissing).toBeGreaterThanOrEqual(1);
    expect(json.consistency.entriesMatched).toBe(rewritten - 1);
    // The online check with the kept head says the same.
    const online = await verify(`?previousSeq=${beforeTrailer.lastSeq}&previousHeadHash=${beforeTrailer.headHash}`);
    expect(online).toMatchObject({ intact: false, firstBreak: { seq: beforeTrailer.lastSeq, reason: 'entry-changed' } });
    await service.http().get('/api/v1/audit/verify?previousSeq=3').auth(auditor, { type: 'bearer' }).expect(400);

    // An export that extends the earlier one passes: the earlier export is consistent with itself.
    expect((await verifyOffline([before, '--previous', before, '--public-key', publicKeyFile])).code).toBe(0);
  });
});

describe('audit trail migration', () => {
  const env = readTestEnv();

  it('chains the entries written before the hash chain existed, in id order, rounded to the millisecond', async () => {
    const url = await createScratchDatabase(env, 'audit_backfill');
    const chainIndex = policyServiceMigrations.findIndex((migration) => migration.name === 'AuditHashChain1764400100000');
    expect(chainIndex).toBeGreaterThan(0);
    const before = new DataSource({ type: 'postgres', url, migrations: policyServiceMigrations.slice(0, chainIndex), migrationsTransactionMode: 'each' });
    await before.initialize();
    try {
      await before.runMigrations();
      for (let i = 1; i <= 3; i += 1) {
        // occurred_at from clock_timestamp(): microseconds, as the old schema wrote them.
        await before.query(`INSERT INTO audit_entries (actor, action, group_id, reason, details) VALUES ($1, $2, $3, $4, $5)`, [
          'user:alice',
          'group.revoked',
          `old-${i}`,
          `reason ${i}`,
          JSON.stringify({ before: { state: 'active' }, after: { state: 'revoked' }, i }),
        ]);
      }
    } finally {
      await before.destroy();
    }
    await runPolicyServiceMigrations(url, { log: () => undefined, warn: () => undefined } as unknown as Logger);

    const db = new Client({ connectionString: url });
    await db.connect();
    try {
      const { rows } = await db.query(
        `SELECT seq, occurred_at, actor, action, group_id, system_id, command_id, reason, incident_ref, source_address, details, prev_hash, hash
         FROM audit_entries ORDER BY seq`,
      );
      expect(rows.map((row) => [Number(row.seq), row.group_id])).toEqual([[1, 'old-1'], [2, 'old-2'], [3, 'old-3']]);
      const verifier = new ChainVerifier(trustKeys([]));
      for (const row of rows) {
        verifier.addEntry(entryOf(row as EntryRow));
      }
      const head = (await db.query('SELECT seq, hash FROM audit_chain_head')).rows[0];
      expect(verifier.finish({ seq: Number(head.seq), hash: head.hash })).toMatchObject({ intact: true, entries: 3, headSeq: 3 });
      expect(rows[0].prev_hash).toBe(GENESIS_HASH);
    } finally {
      await db.end();
    }
  });
});
