import { sign } from 'jsonwebtoken';
import { wallClockMs } from './stats';

export interface JwtSettings {
  secret: string;
  issuer: string;
  audience: string;
}

export interface SentCommand {
  commandId: string;
  action: 'revoke' | 'restore';
  /**
   * Client wall clock just before the request that DECIDED was sent (ms since the epoch): the revoke
   * request, or for a restore the second security lead's approval (the restore is applied in it).
   */
  sentAt: number;
  /** Client wall clock when that request's answer (202 for a revoke, 200 for an approval) arrived. */
  answeredAt: number;
  /**
   * A restore only: the first security lead's restore request (202, `awaiting-approval`, nothing
   * published), sent right before the approval.
   */
  restoreRequest?: { sentAt: number; answeredAt: number };
}

/**
 * The policy service's HTTP API as the benchmark uses it: an admin registers adapters' keys, systems and
 * groups; a security lead revokes and requests restores; a second security lead approves each restore
 * (four eyes, the default for every group).
 */
export class PolicyClient {
  private readonly admin: string;
  private readonly lead: string;
  private readonly approver: string;

  constructor(
    readonly apiUrl: string,
    jwt: JwtSettings,
  ) {
    const token = (sub: string, role: string) =>
      sign({ roles: [role] }, jwt.secret, { subject: sub, issuer: jwt.issuer, audience: jwt.audience, expiresIn: '12h' });
    this.admin = token('bench-admin', 'admin');
    this.lead = token('bench-lead', 'security-lead');
    this.approver = token('bench-approver', 'security-lead');
  }

  /** An adapter's public key (SPKI PEM), so that acknowledgements it signs with that key count. */
  async registerAdapterKey(adapterId: string, keyId: string, publicKey: string): Promise<void> {
    await this.send('PUT', `/adapters/${adapterId}/keys/${keyId}`, this.admin, { publicKey }, 200);
  }

  /** A system enforced by `adapterId` (only that adapter's signed acknowledgements count for it). */
  async registerSystem(id: string, kind: string, adapterId: string, exemptPrincipals: string[] = []): Promise<void> {
    await this.send('POST', '/systems', this.admin, { id, name: id, kind, adapterId, exemptPrincipals }, 201);
  }

  async createGroup(id: string, systemIds: string[]): Promise<void> {
    await this.send('POST', '/groups', this.admin, { id, name: id, systemIds }, 201);
  }

  /**
   * Revokes or restores a group; the group must be in the other state. A revoke is one request (202). A
   * restore is the production path of four eyes: the lead's request (202, `awaiting-approval`), then at
   * once a different lead's approval (200), which applies and publishes it.
   */
  async decide(action: 'revoke' | 'restore', groupId: string): Promise<SentCommand> {
    if (action === 'revoke') {
      const sentAt = wallClockMs();
      const answer = (await this.send('POST', `/groups/${groupId}/revoke`, this.lead, { reason: 'benchmark', incidentRef: 'BENCH-1' }, 202)) as {
        commandId: string;
      };
      return { commandId: answer.commandId, action, sentAt, answeredAt: wallClockMs() };
    }
    const requestSentAt = wallClockMs();
    const requested = (await this.send('POST', `/groups/${groupId}/restore`, this.lead, { reason: 'benchmark' }, 202)) as {
      commandId: string;
      status: string;
    };
    const requestAnsweredAt = wallClockMs();
    if (requested.status !== 'awaiting-approval') {
      throw new Error(`restore of ${groupId}: expected a request awaiting approval, got status ${requested.status}`);
    }
    const sentAt = wallClockMs();
    await this.send('POST', `/commands/${requested.commandId}/approve`, this.approver, { comment: 'benchmark' }, 200);
    return {
      commandId: requested.commandId,
      action,
      sentAt,
      answeredAt: wallClockMs(),
      restoreRequest: { sentAt: requestSentAt, answeredAt: requestAnsweredAt },
    };
  }

  /** Revokes many groups in one request and one transaction (`POST /groups/revoke`); one command per group. */
  async revokeMany(groupIds: readonly string[]): Promise<SentCommand[]> {
    const sentAt = wallClockMs();
    const answer = (await this.send('POST', '/groups/revoke', this.lead, { groupIds, reason: 'benchmark', incidentRef: 'BENCH-1' }, 202)) as {
      commands: { groupId: string; commandId: string | null; accepted: boolean }[];
    };
    const answeredAt = wallClockMs();
    return answer.commands.map((command) => {
      if (!command.accepted || !command.commandId) throw new Error(`bulk revoke: group ${command.groupId} was not revoked by it`);
      return { commandId: command.commandId, action: 'revoke' as const, sentAt, answeredAt };
    });
  }

  private async send(method: 'POST' | 'PUT', path: string, token: string, body: unknown, expected: number): Promise<unknown> {
    const response = await fetch(`${this.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== expected) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 500)}`);
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
