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
import { runAuditVerify } from '../../../scripts/audit-verify';
import { ChainVerifier, GENESIS_HASH, trustKeys, type ChainEntry } from '../src/audit/audit-chain';
import { AuditTrail } from '../src/audit/audit-trail.service';
import { runPolicyServiceMigrations } from '../src/database/database.module';
import { policyServiceMigrations } from '../src/database/migrations';

const ROOT = resolve(__dirname, '../../..');

/**
 * The audit trail an auditor can verify, against a real PostgreSQL: the service's role can only append,
 * the hash chain pinpoints edited, deleted and reordered entries, checkpoints are signed, and an export
 * verifies offline (and fails when cut short or edited).
 */
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

  const exportJsonl = async (): Promise<string[]> => {
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
  };

  const writeExport = (name: string, lines: string[]) => {
    const file = join(dir, name);
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  };

  const verifyOffline = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runAuditVerify(args, { out: (line) => out.push(line), err: (line) => err.push(line) });
    return { code, out: out.join('\n'), err: err.join('\n') };
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
      lines = await exportJsonl();
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
      const file = writeExport('complete.jsonl', lines);
      const trusted = await verifyOffline([file, '--public-key', publicKeyFile]);
      expect(trusted).toMatchObject({ code: 0 });
      expect(trusted.out).toContain('VERDICT: INTACT');
      expect(trusted.err).not.toContain('WARNING');
      const selfTrusted = await verifyOffline([file]);
      expect(selfTrusted.code).toBe(0);
      expect(selfTrusted.err).toMatch(/WARNING.*key IN THE EXPORT ITSELF/);
    });

    it('fails offline for an export cut short or edited, naming the place', async () => {
      const truncated = await verifyOffline([writeExport('truncated.jsonl', lines.slice(0, -2)), '--public-key', publicKeyFile]);
      expect(truncated.code).toBe(1);
      expect(truncated.out).toMatch(/VERDICT: BROKEN/);
      expect(truncated.out).toMatch(/reason:\s+(truncated|checkpoint-mismatch)/);

      const index = lines.findIndex((line) => line.includes('"action":"group.revoked"'));
      const seq = JSON.parse(lines[index]).seq;
      const edited = [...lines];
      edited[index] = edited[index].replace('INC-2041', 'INC-0000');
      const tampered = await verifyOffline([writeExport('edited.jsonl', edited), '--public-key', publicKeyFile]);
      expect(tampered.code).toBe(1);
      expect(tampered.out).toContain(`seq:      ${seq} (line ${index + 1})`);
      expect(tampered.out).toMatch(/reason:\s+hash-mismatch/);

      const otherKey = join(dir, 'other.pub.pem');
      writeFileSync(otherKey, generateSigningKeyPair().publicKeyPem);
      const wrongKey = await verifyOffline([writeExport('complete2.jsonl', lines), '--public-key', otherKey]);
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
      const ok = await run([writeExport('cli.jsonl', lines), '--public-key', publicKeyFile]);
      expect(ok).toMatchObject({ code: 0, stdout: expect.stringContaining('VERDICT: INTACT') });
      const cut = await run([writeExport('cli-cut.jsonl', lines.slice(0, -1)), '--public-key', publicKeyFile]);
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
        verifier.addEntry({
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
          prevHash: row.prev_hash,
          hash: row.hash,
        } satisfies ChainEntry);
      }
      const head = (await db.query('SELECT seq, hash FROM audit_chain_head')).rows[0];
      expect(verifier.finish({ seq: Number(head.seq), hash: head.hash })).toMatchObject({ intact: true, entries: 3, headSeq: 3 });
      expect(rows[0].prev_hash).toBe(GENESIS_HASH);
    } finally {
      await db.end();
    }
  });
});
