import { BadRequestException, ValidationPipe } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { CreateApiKeyRequest, RevokeApiKeyRequest } from '../api-keys/api-key.request.dto';
import { AuditQueryRequest } from '../audit/audit-query.request.dto';
import { AuditVerifyRequest } from '../audit/audit-verify.request.dto';
import { CommandQueryRequest } from '../commands/command-query.request.dto';
import { RevokeGroupRequest } from '../commands/group-decision.request.dto';
import { CreateGroupRequest } from '../groups/group.request.dto';
import { AddExemptionRequest } from '../systems/exemption.request.dto';
import { RegisterSystemRequest } from '../systems/register-system.request.dto';

/** The same pipe settings as the service. */
const pipe = new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true });

async function problems(metatype: new () => object, value: unknown, type: 'body' | 'query' = 'body'): Promise<string[]> {
  try {
    await pipe.transform(value, { type, metatype });
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestException);
    return ((error as BadRequestException).getResponse() as { message: string[] }).message;
  }
}

/**
 * Input that passed validation and then failed in the database (a 500) or was stored other than given.
 * Each case here was found by probing the running service.
 */
describe('request validation: values the service cannot read or store as given', () => {
  const future = '2031-01-31T00:00:00Z';

  it.each(['2030-W01-1', '2030-001', '2030-W01'])('refuses the ISO 8601 week or ordinal date %j wherever a time is taken', async (value) => {
    expect(await problems(AddExemptionRequest, { principal: 'x', reason: 'break glass', expiresAt: value })).toEqual([
      'expiresAt must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z',
    ]);
    expect(await problems(AuditQueryRequest, { from: value }, 'query')).toEqual(['from must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z']);
    expect(await problems(AuditQueryRequest, { to: value }, 'query')).toEqual(['to must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z']);
    expect(await problems(CreateApiKeyRequest, { name: 'k', roles: ['auditor'], expiresAt: value })).toEqual([
      'expiresAt must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z',
    ]);
  });

  it.each(['0x10', '1e2', '1e30', '+5', ' 7', '10.0', '0b11', ''])('refuses the number %j unless written in decimal digits', async (value) => {
    expect(await problems(CommandQueryRequest, { limit: value }, 'query')).toContain('limit must be an integer number');
    expect(await problems(AuditQueryRequest, { limit: value }, 'query')).toContain('limit must be an integer number');
    expect(await problems(AuditVerifyRequest, { previousSeq: value }, 'query')).toContain('previousSeq must be an integer number');
  });

  it('takes limits and sequence numbers written in decimal digits', async () => {
    expect(await problems(CommandQueryRequest, { limit: '16' }, 'query')).toEqual([]);
    expect(await problems(AuditQueryRequest, { limit: '500' }, 'query')).toEqual([]);
    expect(await problems(AuditVerifyRequest, { previousSeq: '0' }, 'query')).toEqual([]);
  });

  it('still takes date-times, with offsets and fractions, and plain dates in queries', async () => {
    for (const value of [future, '2031-01-31T01:00:00.123+01:00', '2031-01-31']) {
      expect(await problems(AddExemptionRequest, { principal: 'x', reason: 'break glass', expiresAt: value })).toEqual([]);
      expect(await problems(AuditQueryRequest, { from: value, to: value }, 'query')).toEqual([]);
    }
  });

  it.each([['2030-01-01 junk 12:00'], ['1/2/2030'], ['Tue, 01 Jan 2030 00:00:00 GMT'], ['2030'], [99999999999999], [true]])(
    'refuses the API key expiry %j, which used to be coerced into some date',
    async (expiresAt) => {
      expect(await problems(CreateApiKeyRequest, { name: 'k', roles: ['auditor'], expiresAt })).toEqual([
        'expiresAt must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z',
      ]);
    },
  );

  it('keeps an API key expiry as the text given (the service converts it)', async () => {
    const request = (await pipe.transform({ name: 'k', roles: ['auditor'], expiresAt: future }, { type: 'body', metatype: CreateApiKeyRequest })) as CreateApiKeyRequest;
    expect(request.expiresAt).toBe(future);
  });

  it('takes only cursors with a real time and a UUID', async () => {
    const id = randomUUID();
    expect(await problems(CommandQueryRequest, { cursor: `2026-11-29T08:46:33.233Z_${id}` }, 'query')).toEqual([]);
    for (const cursor of [
      `9999-99-99T99:99:99.000Z_${id}`,
      '2024-01-01T00:00:00.000Z_------------------------------------',
      '2024-01-01T00:00:00.000Z_000000000000000000000000000000000000',
      `2024-01-01T00:00:00Z_${id}`,
      `2024-01-01T00:00:00.000Z_${id}x`,
    ]) {
      expect(await problems(CommandQueryRequest, { cursor }, 'query')).toEqual(['cursor must be the nextCursor of a previous page']);
    }
  });

  it.each(['99999999999999999999', '9007199254740993'])('refuses previousSeq %s, which bigint cannot take or a number not hold exactly', async (value) => {
    const found = await problems(AuditVerifyRequest, { previousSeq: value, previousHeadHash: 'a'.repeat(64) }, 'query');
    expect(found).toEqual([`previousSeq must not be greater than ${Number.MAX_SAFE_INTEGER}`]);
  });

  it('refuses control characters (C0 and C1) and blank text in names and reasons', async () => {
    const system = { id: 'probe-s1', kind: 'postgres', adapterId: 'pg-main' };
    expect(await problems(RegisterSystemRequest, { ...system, name: 'Ctl\u0001\u001b[31mred' })).toEqual(['name must be one line without control characters']);
    expect(await problems(RegisterSystemRequest, { ...system, name: 'two\nlines' })).toEqual(['name must be one line without control characters']);
    expect(await problems(RegisterSystemRequest, { ...system, name: ' ' })).toEqual(['name must not be blank']);
    expect(await problems(CreateGroupRequest, { id: 'g', name: 'Ctl\u0007\u001b[2J', systemIds: [] })).toEqual(['name must be one line without control characters']);
    expect(await problems(CreateGroupRequest, { id: 'g', name: 'Back office — ledger', systemIds: [] })).toEqual([]);
    expect(await problems(RevokeApiKeyRequest, { reason: 'esc\u001b[31m' })).toEqual(['reason must not contain control characters']);
    expect(await problems(RevokeApiKeyRequest, { reason: '   ' })).toEqual(['reason must not be blank']);
    expect(await problems(RevokeGroupRequest, { reason: 'a\u0085b' })).toEqual(['reason must not contain control characters']);
    expect(await problems(RevokeGroupRequest, { reason: '   ' })).toEqual(['reason must not be blank']);
    // Tabs and line breaks stay allowed in reasons, and so does any script.
    expect(await problems(RevokeGroupRequest, { reason: 'Phished:\n\tledger, stock — مرحلة أولى' })).toEqual([]);
  });
});
