import { AccessDriftDetectedV1Schema, encodeMessage } from '@portcullis/contracts';
import { goldenMessages } from '@portcullis/contracts/golden';
import type { AdapterIdentity } from './adapter-identity';
import { buildDriftReport, reportablePrincipals } from './adapter-messages';

const identity: AdapterIdentity = { adapterId: 'pg-main', kind: 'postgres', instanceId: 'pg-main-a1b2c3', startedAt: new Date() };

describe('buildDriftReport', () => {
  const golden = goldenMessages.accessDriftDetectedV1;
  const drift = {
    generation: golden.generation,
    commandId: golden.commandId,
    detectedAt: golden.occurredAt,
    detail: golden.data.detail,
    principals: golden.data.principals,
    reported: false,
    reenforced: false,
  };

  it('builds the drift report the policy service consumes (the golden message)', () => {
    const report = buildDriftReport(identity, golden.data.systemId, drift, new Date(golden.occurredAt));

    expect({ ...report, messageId: golden.messageId }).toEqual(golden);
    expect(() => encodeMessage(AccessDriftDetectedV1Schema, report)).not.toThrow();
  });

  it('keeps the detail within the contract', () => {
    const report = buildDriftReport(identity, 'stock-db', { ...drift, detail: 'x'.repeat(5_000) });
    expect(report.data.detail).toHaveLength(4_000);
    expect(() => encodeMessage(AccessDriftDetectedV1Schema, report)).not.toThrow();
  });
});

describe('reportablePrincipals', () => {
  it('keeps what the contract accepts: valid principal names, at most 1000', () => {
    expect(reportablePrincipals(undefined)).toBeUndefined();
    expect(reportablePrincipals(['clerk', '', 'line\nbreak', 'x'.repeat(257), `it's ok`])).toEqual(['clerk', `it's ok`]);
    expect(reportablePrincipals(Array.from({ length: 1_500 }, (_, index) => `role-${index}`))).toHaveLength(1_000);
  });
});
