import { eventually } from './eventually';
import type { RunningPolicyService } from './policy-service.harness';
import { testKeys } from './test-keys';

export interface CommandBody {
  id: string;
  status: string;
  systems: { systemId: string; status: string; changed: boolean; generation: number; detail: string | null; [key: string]: unknown }[];
}

/** The policy service's API as a security lead and an auditor use it in specs. */
export class PolicyApi {
  private readonly lead: string;
  /** A second security lead: restores need four eyes. */
  private readonly approver: string;
  private readonly auditor: string;
  private readonly admin: string;

  constructor(private readonly service: RunningPolicyService) {
    this.lead = service.token('alice', 'security-lead');
    this.approver = service.token('bob', 'security-lead');
    this.auditor = service.token('audrey', 'auditor');
    this.admin = service.token('ada', 'admin');
  }

  /**
   * Registers a system enforced by `adapterId`, and that adapter's public key (its test key, see
   * `testKeys`), so the adapter's signed acknowledgements count.
   */
  async registerSystem(id: string, adapterId: string, exemptPrincipals: string[] = [], kind = 'postgres'): Promise<void> {
    await this.registerAdapterKey(adapterId);
    await this.service.http().post('/api/v1/systems').auth(this.admin, { type: 'bearer' })
      .send({ id, name: id, kind, adapterId, exemptPrincipals }).expect(201);
  }

  /** Registers the adapter's test key (idempotent). */
  async registerAdapterKey(adapterId: string): Promise<void> {
    const key = testKeys.adapter(adapterId);
    await this.service.http().put(`/api/v1/adapters/${adapterId}/keys/${key.keyId}`).auth(this.admin, { type: 'bearer' })
      .send({ publicKey: testKeys.publicPem(key) }).expect(200);
  }

  async createGroup(id: string, systemIds: string[]): Promise<void> {
    await this.service.http().post('/api/v1/groups').auth(this.admin, { type: 'bearer' })
      .send({ id, name: id, systemIds }).expect(201);
  }

  /** Revokes or restores a group; returns the command id. A restore goes through four eyes (`restoreWithApproval`). */
  async decide(action: 'revoke' | 'restore', groupId: string, body: { reason: string; incidentRef?: string }): Promise<string> {
    if (action === 'restore') return this.restoreWithApproval(groupId, body);
    const response = await this.service.http().post(`/api/v1/groups/${groupId}/${action}`).auth(this.lead, { type: 'bearer' })
      .send(body).expect(202);
    return response.body.commandId;
  }

  /**
   * Restores a group with four eyes: alice requests it (202, awaiting approval), bob approves it (200), and
   * the restore is applied; returns the command id (the request's).
   */
  async restoreWithApproval(groupId: string, body: { reason: string; incidentRef?: string }, comment = 'second pair of eyes'): Promise<string> {
    const requested = await this.service.http().post(`/api/v1/groups/${groupId}/restore`).auth(this.lead, { type: 'bearer' })
      .send(body).expect(202);
    if (requested.body.status !== 'awaiting-approval') throw new Error(`restore of ${groupId} was not a request: ${JSON.stringify(requested.body)}`);
    await this.service.http().post(`/api/v1/commands/${requested.body.commandId}/approve`).auth(this.approver, { type: 'bearer' })
      .send({ comment }).expect(200);
    return requested.body.commandId;
  }

  async command(commandId: string): Promise<CommandBody> {
    return (await this.service.http().get(`/api/v1/commands/${commandId}`).auth(this.auditor, { type: 'bearer' }).expect(200)).body;
  }

  /** Waits until the command is `status` (default `enforced`). */
  until(commandId: string, status = 'enforced', timeoutMs = 30_000): Promise<CommandBody> {
    return eventually(async () => {
      const body = await this.command(commandId);
      if (body.status !== status) throw new Error(`command ${commandId} is ${body.status}: ${JSON.stringify(body.systems)}`);
      return body;
    }, timeoutMs);
  }

  async get<T = unknown>(path: string): Promise<T> {
    return (await this.service.http().get(`/api/v1${path}`).auth(this.auditor, { type: 'bearer' }).expect(200)).body;
  }
}
