/**
 * Verifies an audit export offline — no database, no network:
 *
 *   npm run audit:verify -- export.jsonl --public-key policy.pub.pem
 *   npm run audit:verify -- new.jsonl --previous old.jsonl --public-key policy.pub.pem
 *   curl -s -H "Authorization: Bearer $AUDITOR" http://127.0.0.1:3000/api/v1/audit/export | npm run --silent audit:verify -- -
 *
 * Recomputes every entry's hash and link from the first entry, checks every checkpoint's signature and
 * head hash, and the signed trailer that shows whether the export is complete. Prints a verdict and the
 * first break; exits 0 only if the trail is intact (1: broken, 2: cannot verify / usage).
 *
 * `--public-key` (repeatable): the policy service's public key, obtained independently of the export
 * (`GET /api/v1/audit/keys`, the deployment's key store). Without it the key in the export's own header is
 * used, which proves only that the export is internally consistent, not who produced it.
 *
 * `--previous old.jsonl`: an earlier export of the same trail, kept outside the database (off-site). The new
 * export must extend it — every entry and checkpoint of the old export unchanged (same seq, content and
 * hashes) in the new one, so the old signed head is on the new chain. A chain verifies on its own even after
 * a database superuser rewrote an entry and re-hashed everything after it (SHA-256 needs no key); against
 * the previous export the rewrite shows, at the first entry that changed. Both files are read once, side by
 * side; the previous export is verified too (with the same keys).
 */
import { createReadStream } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parsePublicKey, publicKeyFingerprint } from '@portcullis/contracts';
import { trustKeys, verifyAuditExport, type ChainBreak, type ExportReport } from '../apps/policy-service/src/audit/audit-chain';

export interface AuditVerifyOutput {
  out: (line: string) => void;
  err: (line: string) => void;
}

const USAGE = 'usage: npm run audit:verify -- <export.jsonl | -> [--previous earlier-export.jsonl] [--public-key policy.pub.pem ...] [--json]';

/** The command, callable from tests: returns the exit code. */
export async function runAuditVerify(
  argv: string[],
  io: AuditVerifyOutput = { out: (line) => console.log(line), err: (line) => console.error(line) },
): Promise<number> {
  let values: { 'public-key'?: string[]; previous?: string; json?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        'public-key': { type: 'string', multiple: true },
        previous: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    io.err(`audit-verify: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    io.err(`audit-verify: give exactly one export file (or - for standard input)\n${USAGE}`);
    return 2;
  }
  const keys: KeyObject[] = [];
  for (const pem of values['public-key'] ?? []) {
    try {
      keys.push(parsePublicKey(pem));
    } catch (error) {
      io.err(`audit-verify: cannot read public key ${pem}: ${(error as Error).message}`);
      return 2;
    }
  }
  const file = positionals[0];
  const previousFile = values.previous;
  if (previousFile === '-') {
    io.err(`audit-verify: --previous needs a file (the new export may come from standard input)\n${USAGE}`);
    return 2;
  }
  const linesOf = (name: string) =>
    createInterface({ input: name === '-' ? process.stdin : createReadStream(name, { encoding: 'utf8' }), crlfDelay: Infinity });
  let report: ExportReport;
  try {
    report = await verifyAuditExport(linesOf(file), keys.length ? trustKeys(keys) : undefined, {
      ...(previousFile !== undefined ? { previous: linesOf(previousFile) } : {}),
    });
  } catch (error) {
    io.err(`audit-verify: cannot read ${previousFile !== undefined ? `${file} or ${previousFile}` : file}: ${(error as Error).message}`);
    return 2;
  }

  if (values.json) {
    io.out(JSON.stringify({ ...report, keySource: keys.length ? 'provided' : 'export-header' }, null, 2));
  } else {
    printReport(report, keys, io, previousFile);
  }
  return report.intact && (report.consistency?.consistent ?? true) ? 0 : 1;
}

function printProblem(problem: ChainBreak, io: AuditVerifyOutput): void {
  const lines = [problem.line ? `line ${problem.line}` : '', problem.previousLine ? `previous export line ${problem.previousLine}` : '']
    .filter(Boolean)
    .join('; ');
  io.out(`  seq:      ${problem.seq ?? '-'}${lines ? ` (${lines})` : ''}`);
  io.out(`  reason:   ${problem.reason}`);
  io.out(`  detail:   ${problem.detail}`);
  if (problem.expected !== null) io.out(`  expected: ${problem.expected}`);
  if (problem.actual !== null) io.out(`  actual:   ${problem.actual}`);
}

function printReport(report: ExportReport, keys: KeyObject[], io: AuditVerifyOutput, previousFile?: string): void {
  if (keys.length === 0) {
    io.err(
      [
        '',
        '!!! WARNING: no --public-key given: signatures were checked against the key IN THE EXPORT ITSELF.',
        '!!! This proves the export is internally consistent (integrity), NOT that the policy service produced it',
        '!!! (origin): whoever can rewrite the export can also replace that key. Verify with the service\'s',
        '!!! public key obtained independently: --public-key policy.pub.pem',
        '',
      ].join('\n'),
    );
  } else {
    io.out(`trusted keys: ${keys.map((key) => publicKeyFingerprint(key)).join(', ')} (given with --public-key)`);
  }
  if (report.header) {
    io.out(`export of ${report.header.exportedAt}; keys in the export: ${report.header.keys.map((key) => key.keyId).join(', ') || 'none'}`);
  }
  io.out(`entries: ${report.entries}, checkpoints: ${report.checkpoints}, head: seq ${report.headSeq} ${report.headHash}`);
  io.out(`trailer: ${report.trailer ? 'present' : 'MISSING'}`);
  const consistency = report.consistency;
  if (consistency) {
    const previous = consistency.previous;
    const head = consistency.previousHead;
    io.out(
      `previous export: ${previousFile} of ${previous.header?.exportedAt ?? '?'}, ` +
        `head: ${head ? `seq ${head.seq} ${head.hash}` : 'unknown (no trailer)'}; on its own: ${previous.intact ? 'intact' : 'BROKEN'}`,
    );
    io.out(
      `consistency: ${consistency.entriesMatched} entries and ${consistency.checkpointsMatched} checkpoints of the previous export unchanged; ` +
        `changed: ${consistency.entriesChanged} entries, ${consistency.checkpointsChanged} checkpoints; ` +
        `missing: ${consistency.entriesMissing} entries, ${consistency.checkpointsMissing} checkpoints; ` +
        `its head is ${consistency.headOnChain ? '' : 'NOT '}on this chain`,
    );
  }
  if (report.intact && (!consistency || consistency.consistent)) {
    io.out(
      'VERDICT: INTACT — every hash, link, checkpoint signature and the signed trailer check out' +
        (consistency ? ', and the export extends the previous one.' : '.'),
    );
    return;
  }
  if (!report.intact) {
    io.out(`VERDICT: BROKEN — ${report.breaks} problem(s); the first:`);
    printProblem(report.firstBreak!, io);
  }
  if (consistency && !consistency.previous.intact) {
    io.out(`${report.intact ? 'VERDICT: BROKEN — ' : ''}the previous export does not verify on its own (${consistency.previous.breaks} problem(s)); the first:`);
    printProblem(consistency.previous.firstBreak!, io);
  } else if (consistency && !consistency.consistent) {
    io.out(
      `${report.intact ? 'VERDICT: INCONSISTENT — the export verifies on its own but ' : 'It also '}does not extend the previous export: ` +
        `the history that export recorded was rewritten (${consistency.problems} difference(s)); the first:`,
    );
    printProblem(consistency.firstProblem!, io);
  }
}

if (require.main === module) {
  runAuditVerify(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`audit-verify: ${(error as Error).stack ?? String(error)}`);
      process.exitCode = 2;
    },
  );
}
