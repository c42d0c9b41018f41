import { eventually } from './eventually';
import type { RunningPolicyService } from './policy-service.harness';

export interface CommandBody {
  id: string;
  status: string;
  systems: { systemId: string; status: string; changed: boolean; generation: number; detail: string | null; [key: string]: unknown }[];
}

/** The policy service's API as a security lead and an auditor use it in specs. */
export class PolicyApi {
  private readonly lead: string;
  private readonly auditor: string;
  private readonly admin: string;

  constructor(private readonly service: RunningPolicyService) {
    this.lead = service.token('alice', 'security-lead');
    this.auditor = service.token('audrey', 'auditor');
    this.admin = service.token('ada', 'admin');
  }

  async registerSystem(id: string, exemptPrincipals: string[] = [], kind = 'postgres'): Promise<void> {
    await this.service.http().post('/api/v1/systems').auth(this.admin, { type: 'bearer' })
      .send({ id, name: id, kind, exemptPrincipals }).expect(201);
  }

  async createGroup(id: string, systemIds: string[]): Promise<void> {
    await this.service.http().post('/api/v1/groups').auth(this.admin, { type: 'bearer' })
      .send({ id, name: id, systemIds }).expect(201);
  }

  /** Revokes or restores a group; returns the command id. */
  async decide(action: 'revoke' | 'restore', groupId: string, body: { reason: string; incidentRef?: string }): Promise<string> {
    const response = await this.service.http().post(`/api/v1/groups/${groupId}/${action}`).auth(this.lead, { type: 'bearer' })
      .send(body).expect(202);
    return response.body.commandId;
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
