import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { round } from './stats';

/** One scenario's figures as written to latest.json: the common fields plus the scenario's own. */
export interface ScenarioResult {
  name: string;
  samples: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
  [field: string]: unknown;
}

export interface Target {
  scenario: string;
  what: string;
  target: string;
  measured: string;
  met: boolean;
}

export function writeAtomically(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '-';
  return String(value);
}

/** A plain table that reads well in a terminal and pastes into Markdown (numbers right, text left). */
export function table(headers: string[], rows: unknown[][]): string {
  const text = rows.map((row) => row.map(cell));
  const numeric = headers.map((_, column) => rows.every((row) => row[column] === undefined || row[column] === null || typeof row[column] === 'number'));
  const widths = headers.map((header, column) => Math.max(header.length, ...text.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((value, column) => (numeric[column] ? value.padStart(widths[column]) : value.padEnd(widths[column]))).join(' | ')} |`;
  const rule = `|${widths.map((width, column) => `${'-'.repeat(width + 1)}${numeric[column] ? ':' : '-'}`).join('|')}|`;
  return [line(headers), rule, ...text.map(line)].join('\n');
}

export function scenarioTable(results: readonly ScenarioResult[]): string {
  return table(
    ['scenario', 'samples', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'notes'],
    results.map((result) => [result.name, result.samples, result.p50_ms, result.p95_ms, result.p99_ms, result.max_ms, notesOf(result)]),
  );
}

function notesOf(result: ScenarioResult): string {
  const notes: string[] = [];
  if (result.ratio_p99 !== undefined) notes.push(`p99 ${result.ratio_p99}× baseline (${result.baseline_p99_ms} ms)`);
  if (result.ratio !== undefined) notes.push(`Portcullis ${result.portcullis_ms} ms vs direct SQL ${result.direct_ms} ms = ${result.ratio}×`);
  if (result.commands_per_s !== undefined) {
    notes.push(`${result.commands_per_s} commands/s; p99 loaded ${result.p99_ms_loaded} ms vs idle ${result.p99_ms_idle} ms`);
  }
  if (result.global_revoke_ms !== undefined) notes.push(`${result.systems} systems / ${result.groups} groups enforced in ${result.global_revoke_ms} ms`);
  if (result.baseline_error !== undefined) notes.push(`its raw-Kafka floor failed: ${String(result.baseline_error).slice(0, 120)}`);
  if (result.ratio_global_revoke !== undefined) notes.push(`${result.ratio_global_revoke}× raw Kafka (${result.baseline_global_revoke_ms} ms)`);
  if (result.name === 'baseline-kafka-scale') notes.push(`${result.systems} requests to ${result.consumers} consumers and back`);
  return notes.join('; ');
}

/** Checks the issue's targets against the figures. */
export function targets(results: readonly ScenarioResult[]): Target[] {
  const found: Target[] = [];
  const get = (name: string) => results.find((result) => result.name === name);
  for (const result of results.filter((candidate) => candidate.name.startsWith('tte-noop-'))) {
    const ratio = result.ratio_p99 as number;
    found.push({ scenario: result.name, what: 'p99 vs raw Kafka p99', target: '≤ 2×', measured: `${ratio}×`, met: ratio <= 2 });
  }
  const postgres = get('postgres-1000');
  if (postgres) {
    const ratio = postgres.ratio as number;
    found.push({ scenario: postgres.name, what: 'revoke vs direct SQL (p50)', target: '≤ 1.2×', measured: `${ratio}×`, met: ratio <= 1.2 });
  }
  const throughput = get('throughput');
  if (throughput) {
    const rate = throughput.commands_per_s as number;
    const loaded = throughput.p99_ms_loaded as number;
    const idle = throughput.p99_ms_idle as number;
    found.push({ scenario: 'throughput', what: 'commands/s completed', target: '≥ 200', measured: String(rate), met: rate >= 200 });
    found.push({
      scenario: 'throughput',
      what: 'p99 loaded vs idle',
      target: '≤ 3×',
      measured: `${Math.round((loaded / idle) * 100) / 100}× (${loaded} / ${idle} ms)`,
      met: loaded <= 3 * idle,
    });
  }
  const scale = get('scale');
  if (scale) {
    const ms = scale.global_revoke_ms as number;
    found.push({ scenario: 'scale', what: `all ${scale.systems} systems enforced`, target: '≤ 5000 ms', measured: `${ms} ms`, met: ms <= 5_000 });
  }
  return found;
}

export function targetTable(found: readonly Target[]): string {
  return table(
    ['scenario', 'what', 'target', 'measured', 'met'],
    found.map((target) => [target.scenario, target.what, target.target, target.measured, target.met ? 'yes' : 'NO']),
  );
}

/** One row of the side-by-side table: Portcullis and the floor it is measured against, in the same run. */
export interface SideBySide {
  scenario: string;
  what: string;
  portcullis: string;
  floor: string;
  ratio: string;
}

const ms = (value: unknown) => `${value} ms`;
const times = (value: unknown) => (value === undefined ? '' : `${value}×`);
const loadedVsIdle = (result: ScenarioResult) =>
  `${round((result.p99_ms_loaded as number) / (result.p99_ms_idle as number), 2)}× (${result.p99_ms_loaded} / ${result.p99_ms_idle} ms)`;

/**
 * Every scenario beside its floor from the same run — raw kafkajs for the Kafka paths, direct `pg` for
 * postgres-1000 — so that a run on a slow or busy machine still says how far Portcullis is from what
 * the same machine gives the bare pattern.
 */
export function sideBySide(results: readonly ScenarioResult[]): SideBySide[] {
  const rows: SideBySide[] = [];
  const get = (name: string) => results.find((result) => result.name === name);
  for (const tte of results.filter((result) => result.name.startsWith('tte-noop-'))) {
    const base = get(`baseline-kafka-${tte.adapters}`);
    if (!base) continue;
    rows.push({ scenario: tte.name, what: 'p99 time to enforce', portcullis: ms(tte.p99_ms), floor: ms(base.p99_ms), ratio: times(tte.ratio_p99) });
  }
  const postgres = get('postgres-1000');
  if (postgres) {
    rows.push({ scenario: postgres.name, what: 'revoke (p50)', portcullis: ms(postgres.portcullis_ms), floor: `${ms(postgres.direct_ms)} (direct SQL)`, ratio: times(postgres.ratio) });
  }
  const throughput = get('throughput');
  const throughputBase = get('baseline-kafka-throughput');
  if (throughput && throughputBase) {
    const cpu = (result: ScenarioResult) => (result.cpu_ms_per_command_loaded as Record<string, number>).total;
    // Both ran at the same offered rate, which caps either: a floor that keeps up shows that rate, not its capacity.
    const offered = `commands/s completed, ${throughput.offered_per_s}/s offered`;
    rows.push({ scenario: 'throughput', what: offered, portcullis: String(throughput.commands_per_s), floor: String(throughputBase.commands_per_s), ratio: '' });
    rows.push({ scenario: 'throughput', what: 'CPU per command under load, processes taking part', portcullis: ms(cpu(throughput)), floor: ms(cpu(throughputBase)), ratio: times(throughput.ratio_cpu_per_command) });
    rows.push({ scenario: 'throughput', what: 'p99 loaded vs idle', portcullis: loadedVsIdle(throughput), floor: loadedVsIdle(throughputBase), ratio: '' });
  }
  const scale = get('scale');
  const scaleBase = get('baseline-kafka-scale');
  if (scale && scaleBase) {
    rows.push({ scenario: 'scale', what: `all ${scale.systems} systems`, portcullis: ms(scale.global_revoke_ms), floor: ms(scaleBase.p50_ms), ratio: times(scale.ratio_global_revoke) });
  }
  for (const result of [throughput, scale]) {
    if (result?.baseline_error !== undefined) {
      rows.push({ scenario: result.name, what: 'its raw-Kafka floor', portcullis: '', floor: `failed: ${String(result.baseline_error).slice(0, 120)}`, ratio: '' });
    }
  }
  return rows;
}

export function sideBySideTable(rows: readonly SideBySide[]): string {
  return table(
    ['scenario', 'what', 'Portcullis', 'floor', 'ratio'],
    rows.map((row) => [row.scenario, row.what, row.portcullis, row.floor, row.ratio]),
  );
}

/** Time-to-enforce percentiles by number of adapters, Portcullis against the raw Kafka baseline (hand-written SVG). */
export function tteChart(results: readonly ScenarioResult[], subtitle: string): string {
  const tte = results.filter((result) => result.name.startsWith('tte-noop-'));
  const sizes = tte.map((result) => result.adapters as number);
  const baseOf = (n: number) => results.find((result) => result.name === `baseline-kafka-${n}`);
  const series = [
    { label: 'Portcullis p50', key: 'p50_ms', of: (n: number) => tte.find((r) => r.adapters === n), colour: '#1f77b4', dash: '' },
    { label: 'Portcullis p95', key: 'p95_ms', of: (n: number) => tte.find((r) => r.adapters === n), colour: '#ff7f0e', dash: '' },
    { label: 'Portcullis p99', key: 'p99_ms', of: (n: number) => tte.find((r) => r.adapters === n), colour: '#d62728', dash: '' },
    { label: 'raw Kafka p50', key: 'p50_ms', of: baseOf, colour: '#1f77b4', dash: '6 4' },
    { label: 'raw Kafka p95', key: 'p95_ms', of: baseOf, colour: '#ff7f0e', dash: '6 4' },
    { label: 'raw Kafka p99', key: 'p99_ms', of: baseOf, colour: '#d62728', dash: '6 4' },
  ] as const;
  const width = 760;
  const height = 480;
  const margin = { left: 70, right: 190, top: 60, bottom: 90 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const values = series.flatMap((line) => sizes.map((n) => Number(line.of(n)?.[line.key] ?? 0)));
  const yMax = niceCeiling(Math.max(1, ...values));
  const x = (index: number) => margin.left + (sizes.length === 1 ? plotW / 2 : (index * plotW) / (sizes.length - 1));
  const y = (value: number) => margin.top + plotH - (value / yMax) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  parts.push(`<text x="${margin.left}" y="24" font-size="16" font-weight="bold">Time to enforce by number of adapters</text>`);
  parts.push(`<text x="${margin.left}" y="42" fill="#555">${escapeXml(subtitle)}</text>`);
  for (let tick = 0; tick <= 5; tick++) {
    const value = (yMax * tick) / 5;
    parts.push(`<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${y(value)}" y2="${y(value)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${margin.left - 8}" y="${y(value) + 4}" text-anchor="end">${Math.round(value * 10) / 10}</text>`);
  }
  parts.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">milliseconds</text>`);
  sizes.forEach((n, index) => {
    parts.push(`<text x="${x(index)}" y="${margin.top + plotH + 20}" text-anchor="middle">${n}</text>`);
  });
  parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">adapter instances (N)</text>`);
  parts.push(`<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${margin.top + plotH}" stroke="#333"/>`);
  parts.push(`<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${margin.top + plotH}" y2="${margin.top + plotH}" stroke="#333"/>`);
  series.forEach((line, lineIndex) => {
    const points = sizes.map((n, index) => ({ n, index, value: Number(line.of(n)?.[line.key]) })).filter((point) => Number.isFinite(point.value));
    if (points.length === 0) return;
    const path = points.map((point) => `${x(point.index)},${y(point.value)}`).join(' ');
    parts.push(`<polyline points="${path}" fill="none" stroke="${line.colour}" stroke-width="2" stroke-dasharray="${line.dash}"/>`);
    for (const point of points) {
      parts.push(`<circle cx="${x(point.index)}" cy="${y(point.value)}" r="3.5" fill="${line.dash ? '#fff' : line.colour}" stroke="${line.colour}" stroke-width="2"><title>${line.label}, N=${point.n}: ${point.value} ms</title></circle>`);
    }
    const legendY = margin.top + 10 + lineIndex * 22;
    const legendX = margin.left + plotW + 20;
    parts.push(`<line x1="${legendX}" x2="${legendX + 28}" y1="${legendY}" y2="${legendY}" stroke="${line.colour}" stroke-width="2" stroke-dasharray="${line.dash}"/>`);
    parts.push(`<text x="${legendX + 36}" y="${legendY + 4}">${line.label}</text>`);
  });
  for (const result of tte) {
    if (result.ratio_p99 === undefined) continue;
    parts.push(`<text x="${x(sizes.indexOf(result.adapters as number))}" y="${margin.top + plotH + 40}" text-anchor="middle" fill="#555">p99 ${result.ratio_p99}× raw</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function niceCeiling(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
