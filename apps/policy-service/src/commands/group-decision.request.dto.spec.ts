import { ValidationPipe, BadRequestException } from '@nestjs/common';
import { CreateGroupRequest } from '../groups/group.request.dto';
import { RegisterSystemRequest } from '../systems/register-system.request.dto';
import { AddExemptionRequest, RemoveExemptionRequest } from '../systems/exemption.request.dto';
import { RestoreApprovalRequest } from '../groups/group.request.dto';
import { ApproveRestoreRequest, RejectRestoreRequest, RestoreGroupRequest, RevokeGroupRequest } from './group-decision.request.dto';

/** The same pipe settings as the service: unknown fields are errors, not silently dropped. */
const pipe = new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true });

async function messages(metatype: new () => object, value: unknown): Promise<string[]> {
  try {
    await pipe.transform(value, { type: 'body', metatype });
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestException);
    return ((error as BadRequestException).getResponse() as { message: string[] }).message;
  }
}

describe('request validation', () => {
  it('accepts a revoke with a reason and an incident reference', async () => {
    expect(await messages(RevokeGroupRequest, { reason: 'Contain INC-1', incidentRef: 'INC-1' })).toEqual([]);
  });

  it('requires a reason and refuses unknown fields', async () => {
    const problems = await messages(RevokeGroupRequest, { force: true });
    expect(problems).toEqual(expect.arrayContaining(['property force should not exist']));
    expect(problems.some((problem) => problem.startsWith('reason'))).toBe(true);
  });

  it('refuses control characters in a reason', async () => {
    expect(await messages(RevokeGroupRequest, { reason: 'hide\u0000this' })).toEqual([
      'reason must not contain control characters',
    ]);
  });

  it.each(['Stock_DB', '-stock', 'stock-', 'a'.repeat(64), 'stock db', ''])('refuses the system id %j', async (id) => {
    const problems = await messages(RegisterSystemRequest, { id, name: 'x', kind: 'postgres' });
    expect(problems.some((problem) => problem.startsWith('id must be a lower-case slug'))).toBe(true);
  });

  it('refuses duplicate and malformed system ids in a group', async () => {
    expect(await messages(CreateGroupRequest, { id: 'g', name: 'G', systemIds: ['a', 'a'] })).toEqual([
      "All systemIds's elements must be unique",
    ]);
    const problems = await messages(CreateGroupRequest, { id: 'g', name: 'G', systemIds: ['ok', 'Not OK'] });
    expect(problems.some((problem) => problem.startsWith('each of systemIds'))).toBe(true);
  });

  it('refuses exempt principals with control characters', async () => {
    const problems = await messages(RegisterSystemRequest, { id: 's', name: 'S', kind: 'postgres', adapterId: 'pg-main', exemptPrincipals: ['ok', 'bad\n'] });
    expect(problems).toEqual(['exemptPrincipals must not contain control characters']);
  });

  it('accepts a restore with an incident reference, an approval without a comment, and requires a rejection reason', async () => {
    expect(await messages(RestoreGroupRequest, { reason: 'Rotated', incidentRef: 'INC-1' })).toEqual([]);
    expect(await messages(ApproveRestoreRequest, {})).toEqual([]);
    expect(await messages(ApproveRestoreRequest, { comment: 'checked' })).toEqual([]);
    expect((await messages(RejectRestoreRequest, {})).some((problem) => problem.startsWith('reason'))).toBe(true);
    expect(await messages(RejectRestoreRequest, { reason: 'not yet', force: true })).toEqual(['property force should not exist']);
  });

  it('accepts only the known restore approval modes, with a reason', async () => {
    expect(await messages(RestoreApprovalRequest, { restoreApproval: 'single-admin', reason: 'out of hours' })).toEqual([]);
    const problems = await messages(RestoreApprovalRequest, { restoreApproval: 'nobody', reason: 'x' });
    expect(problems).toEqual(expect.arrayContaining(['restoreApproval must be one of: four-eyes, single-admin']));
    expect(problems.some((problem) => problem.startsWith('reason'))).toBe(true);
  });

  it('validates exemptions: principal, reason and an ISO 8601 expiry', async () => {
    expect(await messages(AddExemptionRequest, { principal: 'breakglass', reason: 'on-call DBA', expiresAt: '2030-01-01T00:00:00Z' })).toEqual([]);
    expect(await messages(AddExemptionRequest, { principal: 'bad\u0007', reason: 'on-call DBA' })).toEqual([
      'principal must not contain control characters',
    ]);
    expect(await messages(AddExemptionRequest, { principal: 'bg', reason: 'on-call DBA', expiresAt: 'tomorrow' })).toEqual([
      'expiresAt must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z',
    ]);
    expect((await messages(RemoveExemptionRequest, {})).some((problem) => problem.startsWith('reason'))).toBe(true);
  });
});
