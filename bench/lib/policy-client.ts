import { sign } from 'jsonwebtoken';
import { wallClockMs } from './stats';

export interface JwtSettings {
  secret: string;
  issuer: string;
  audience: string;
}

export interface SentCommand {
  commandId: string;
  /** Client wall clock just before the request was sent (ms since the epoch). */
  sentAt: number;
  /** Client wall clock when the 202 arrived. */
  answeredAt: number;
}

/** The policy service's HTTP API as the benchmark uses it: an admin registers, a security lead decides. */
export class PolicyClient {
  private readonly admin: string;
  private readonly lead: string;

  constructor(
    readonly apiUrl: string,
    jwt: JwtSettings,
  ) {
    const token = (sub: string, role: string) =>
      sign({ roles: [role] }, jwt.secret, { subject: sub, issuer: jwt.issuer, audience: jwt.audience, expiresIn: '12h' });
    this.admin = token('bench-admin', 'admin');
    this.lead = token('bench-lead', 'security-lead');
  }

  async registerSystem(id: string, kind: string, exemptPrincipals: string[] = []): Promise<void> {
    await this.post('/systems', this.admin, { id, name: id, kind, exemptPrincipals }, 201);
  }

  async createGroup(id: string, systemIds: string[]): Promise<void> {
    await this.post('/groups', this.admin, { id, name: id, systemIds }, 201);
  }

  /** Revokes or restores a group; the group must be in the other state (202 expected). */
  async decide(action: 'revoke' | 'restore', groupId: string): Promise<SentCommand> {
    const sentAt = wallClockMs();
    const body = action === 'revoke' ? { reason: 'benchmark', incidentRef: 'BENCH-1' } : { reason: 'benchmark' };
    const answer = (await this.post(`/groups/${groupId}/${action}`, this.lead, body, 202)) as { commandId: string };
    return { commandId: answer.commandId, sentAt, answeredAt: wallClockMs() };
  }

  private async post(path: string, token: string, body: unknown, expected: number): Promise<unknown> {
    const response = await fetch(`${this.apiUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== expected) throw new Error(`POST ${path}: ${response.status} ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) : null;
  }
}

/** Runs `work` over `items` with at most `concurrency` at a time. */
export async function forEachLimited<T>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index], index);
    }
  });
  await Promise.all(lanes);
}
