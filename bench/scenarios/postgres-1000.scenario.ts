import { Client, escapeIdentifier, escapeLiteral } from 'pg';
import type { BenchOptions } from '../lib/bench-options';
import type { BenchStack } from '../lib/bench-stack';
import { outboxMark, timings, type ObservedCommand } from '../lib/command-tracker';
import { adapterInstance, pad, register, startFleet, stopFleet } from '../lib/fleet';
import { CpuAccount } from '../lib/proc-stats';
import type { ScenarioResult } from '../lib/report';
import { round, summarize, wallClockMs } from '../lib/stats';
import { crossCheck, hopSummary } from './timing-summary';

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

const PASSWORD = 'bench-session-password';
const TERMINATE_WAIT_MS = 3_000;

/**
 * postgres-1000: revoking a group whose one system is a real PostgreSQL server with 1,000 login roles,
 * 10 of them with open sessions, through Portcullis (the real PostgresRoleEnforcer in the adapter kit),
 * against the same work done directly with `pg` in the same run: connect, list the login roles, one
 * `ALTER ROLE … NOLOGIN` per role, then end the open sessions with `pg_terminate_backend` — the
 * statements the enforcer issues, without Kafka, the policy service or the adapter's durable state.
 * Samples alternate Portcullis and direct, each followed by a restore, with the sessions opened again
 * before every revoke.
 */
export async function runPostgresScenario(stack: BenchStack, options: BenchOptions): Promise<ScenarioResult> {
  const { roles, sessions, samples } = options.postgres;
  const name = `postgres-${roles}`;
  const roleNames = Array.from({ length: roles }, (_, index) => `bench_role_${pad(index + 1, 4)}`);
  const sessionRoles = roleNames.slice(0, sessions);
  const url = stack.targetDb.url;
  log(`${name}: creating ${roles} login roles on the target server ...`);
  await withClient(url, async (client) => {
    const statements = roleNames.map((role, index) =>
      index < sessions ? `CREATE ROLE ${escapeIdentifier(role)} LOGIN PASSWORD ${escapeLiteral(PASSWORD)};` : `CREATE ROLE ${escapeIdentifier(role)} LOGIN;`,
    );
    await client.query(statements.join('\n'));
  });
  const systemId = 'pg1000-target';
  const groupId = 'pg1000-group';
  const instances = [adapterInstance(stack, 'pg1000-adapter', 'postgres', { [systemId]: { url } })];
  await register(stack, instances, 'postgres', [{ id: groupId, systemIds: [systemId] }]);
  const fleet = await startFleet(stack, options, 'pg1000', instances);
  const tracker = stack.tracker(options.pollMs);
  const open: Client[] = [];
  const openSessions = async () => {
    await closeSessions(open);
    open.push(...(await Promise.all(sessionRoles.map((role) => connectAs(url, role)))));
  };
  const viaPortcullis = async (action: 'revoke' | 'restore') => tracker.waitFor(await stack.client.decide(action, groupId));
  try {
    // Warm-up: one revoke and restore each way (connections, JIT of the code paths, catalog caches).
    await openSessions();
    await viaPortcullis('revoke');
    await check(url, roleNames, sessionRoles, 'revoked');
    await viaPortcullis('restore');
    await check(url, roleNames, sessionRoles, 'active');
    await openSessions();
    await directRevoke(url, sessions);
    await directRestore(url, roleNames);

    await stack.profileCheckpoint('setup-postgres');
    const mark = await outboxMark(stack.db);
    const revokes: ObservedCommand[] = [];
    const restores: ObservedCommand[] = [];
    const direct: number[] = [];
    const directRestores: number[] = [];
    const portcullisCpu = new CpuAccount(stack.cpuMeter());
    const directCpu = new CpuAccount(stack.cpuMeter());
    for (let index = 0; index < samples; index++) {
      await openSessions();
      revokes.push(await portcullisCpu.measure(() => viaPortcullis('revoke')));
      await check(url, roleNames, sessionRoles, 'revoked');
      restores.push(await viaPortcullis('restore'));
      await check(url, roleNames, sessionRoles, 'active');

      await openSessions();
      direct.push(await directCpu.measure(() => directRevoke(url, sessions)));
      await check(url, roleNames, sessionRoles, 'revoked');
      directRestores.push(await directRestore(url, roleNames));
      log(`  ${index + 1}/${samples}: Portcullis ${round(revokes[index].observedAt - revokes[index].sentAt)} ms (client view), direct ${round(direct[index])} ms`);
    }
    await stack.profileCheckpoint('postgres');
    const timed = await timings(stack.db, revokes, mark);
    const restoreTimed = await timings(stack.db, restores, mark);
    const portcullis = summarize(timed.map((timing) => timing.tteMs));
    const directSummary = summarize(direct);
    return {
      name,
      ...portcullis,
      portcullis_ms: portcullis.p50_ms,
      direct_ms: directSummary.p50_ms,
      ratio: round(portcullis.p50_ms / directSummary.p50_ms, 2),
      ratio_basis: 'p50 of revoke time, Portcullis end to end vs direct SQL',
      direct: directSummary,
      roles,
      sessions,
      // From the second security lead's approval (four eyes); restore_request_portcullis: the request before it.
      restore_portcullis: summarize(restoreTimed.map((timing) => timing.tteMs)),
      restore_request_portcullis: summarize(restores.flatMap((command) => (command.restoreRequest ? [command.restoreRequest.answeredAt - command.restoreRequest.sentAt] : []))),
      restore_direct: summarize(directRestores),
      cpu_ms_per_revoke: portcullisCpu.perOperation(),
      cpu_ms_per_direct_revoke: directCpu.perOperation(),
      hops_p50_ms: hopSummary(timed),
      cross_check: crossCheck(timed),
    };
  } finally {
    tracker.stop();
    await closeSessions(open);
    await stopFleet(stack, fleet);
  }
}

async function withClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function connectAs(url: string, role: string): Promise<Client> {
  const target = new URL(url);
  const client = new Client({ host: target.hostname, port: Number(target.port), database: 'postgres', user: role, password: PASSWORD });
  client.on('error', () => undefined); // the session is terminated on purpose
  await client.connect();
  await client.query('SELECT 1');
  return client;
}

async function closeSessions(open: Client[]): Promise<void> {
  await Promise.all(open.splice(0).map((client) => client.end().catch(() => undefined)));
}

/**
 * The enforcer's statements, done directly: list the login roles (not superusers, not our own), take
 * LOGIN from each, end their sessions one by one (waiting until each is gone, as the enforcer does).
 */
async function directRevoke(url: string, expectedSessions: number): Promise<number> {
  const started = wallClockMs();
  await withClient(url, async (client) => {
    const { rows } = await client.query<{ rolname: string }>(
      `select rolname from pg_catalog.pg_roles
        where rolcanlogin and not rolsuper and rolname <> current_user and rolname <> session_user order by rolname`,
    );
    for (const { rolname } of rows) await client.query(`ALTER ROLE ${escapeIdentifier(rolname)} NOLOGIN`);
    const sessions = await client.query<{ pid: number }>(
      `select pid from pg_catalog.pg_stat_activity where usename = any($1::text[]) and pid <> pg_backend_pid()`,
      [rows.map((row) => row.rolname)],
    );
    let ended = 0;
    for (const { pid } of sessions.rows) {
      const result = await client.query<{ ended: boolean }>('select pg_terminate_backend($1::int, $2::bigint) as ended', [pid, TERMINATE_WAIT_MS]);
      if (result.rows[0]?.ended) ended += 1;
    }
    if (ended !== expectedSessions) throw new Error(`direct revoke ended ${ended} sessions, expected ${expectedSessions}`);
  });
  return wallClockMs() - started;
}

async function directRestore(url: string, roleNames: readonly string[]): Promise<number> {
  const started = wallClockMs();
  await withClient(url, async (client) => {
    for (const role of roleNames) await client.query(`ALTER ROLE ${escapeIdentifier(role)} LOGIN`);
  });
  return wallClockMs() - started;
}

/** The target really is in the expected state: every bench role's LOGIN, and no session left after a revoke. */
async function check(url: string, roleNames: readonly string[], sessionRoles: readonly string[], expected: 'revoked' | 'active'): Promise<void> {
  await withClient(url, async (client) => {
    const { rows } = await client.query<{ can_login: number; sessions: number }>(
      `select (select count(*)::int from pg_roles where rolname = any($1::text[]) and rolcanlogin) as can_login,
              (select count(*)::int from pg_stat_activity where usename = any($2::text[])) as sessions`,
      [roleNames, sessionRoles],
    );
    const { can_login: canLogin, sessions } = rows[0];
    const ok = expected === 'revoked' ? canLogin === 0 && sessions === 0 : canLogin === roleNames.length;
    if (!ok) throw new Error(`target not ${expected}: ${canLogin} roles can log in, ${sessions} sessions open`);
  });
}
