/**
 * Where a process spent its CPU: self time by function and by package, from a V8 .cpuprofile.
 *
 *   npx tsx bench/tools/summarize-cpu-profile.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1];
  if (url.startsWith('node:')) return url;
  const own = /(apps\/[^/]+|libs\/[^/]+|bench|dist\/apps\/[^/]+)/.exec(url);
  return own ? own[1] : url;
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: summarize-cpu-profile.ts <file.cpuprofile> [top]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
const wallMs = (profile.endTime - profile.startTime) / 1000;
let busyMs = 0;
const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
for (const [id, us] of selfUs) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const ms = us / 1000;
  if (functionName !== '(idle)') busyMs += ms;
  const key = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*?(node_modules|apps|libs|bench|dist)\//, '$1/')}:${lineNumber + 1}` : ''}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
  const where = area(url, functionName);
  byArea.set(where, (byArea.get(where) ?? 0) + ms);
}
const show = (title: string, map: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [key, ms] of [...map].filter(([key]) => !key.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${ms.toFixed(0).padStart(8)} ms ${((ms / busyMs) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
};
console.log(`${file}: ${wallMs.toFixed(0)} ms sampled, ${busyMs.toFixed(0)} ms busy (${((busyMs / wallMs) * 100).toFixed(0)}% of one core)`);
show('self time by package or area', byArea);
show('self time by function', byFunction);
