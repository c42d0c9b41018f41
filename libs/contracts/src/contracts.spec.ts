import {
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  AdapterHeartbeatV1Schema,
  AdapterReportV1Schema,
  ContractViolationError,
  decodeMessage,
  encodeMessage,
  SecurityAlertV1Schema,
  SystemAccessChangedV1Schema,
} from './index';
import { goldenMessages } from './golden';

describe('event contracts', () => {
  it.each([
    ['system-access.changed v1', SystemAccessChangedV1Schema, goldenMessages.systemAccessChangedV1],
    ['access.acknowledged v1', AccessAcknowledgedV1Schema, goldenMessages.accessAcknowledgedV1],
    ['access.drift-detected v1', AccessDriftDetectedV1Schema, goldenMessages.accessDriftDetectedV1],
    ['adapter.heartbeat v1', AdapterHeartbeatV1Schema, goldenMessages.adapterHeartbeatV1],
    ['adapter.security-alert v1', SecurityAlertV1Schema, goldenMessages.adapterSecurityAlertV1],
  ])('accepts the golden %s message unchanged', (_name, schema, golden) => {
    expect(decodeMessage(schema, JSON.stringify(golden))).toEqual(golden);
  });

  it('tells adapter reports apart by type on the acknowledgements topic', () => {
    expect(decodeMessage(AdapterReportV1Schema, JSON.stringify(goldenMessages.accessDriftDetectedV1)).type).toBe('access.drift-detected');
    expect(decodeMessage(AdapterReportV1Schema, JSON.stringify(goldenMessages.accessAcknowledgedV1)).type).toBe('access.acknowledged');
    const unknown = { ...goldenMessages.accessAcknowledgedV1, type: 'access.teleported' };
    expect(() => decodeMessage(AdapterReportV1Schema, JSON.stringify(unknown))).toThrow(ContractViolationError);
  });

  it('tolerates fields added by a newer producer within the same version', () => {
    const newer = { ...goldenMessages.systemAccessChangedV1, traceparent: '00-abc-def-01' };
    expect(decodeMessage(SystemAccessChangedV1Schema, Buffer.from(JSON.stringify(newer))).generation).toBe(7);
  });

  it('rejects a message whose generation is not a positive integer', () => {
    const bad = { ...goldenMessages.systemAccessChangedV1, generation: -1 };
    expect(() => decodeMessage(SystemAccessChangedV1Schema, JSON.stringify(bad))).toThrow(/generation/);
  });

  it('rejects an unknown desired state and names the field', () => {
    const bad = {
      ...goldenMessages.systemAccessChangedV1,
      data: { ...goldenMessages.systemAccessChangedV1.data, desiredState: 'disabled' },
    };
    expect(() => decodeMessage(SystemAccessChangedV1Schema, JSON.stringify(bad))).toThrow(/data\.desiredState/);
  });

  it('rejects a message with a NUL character anywhere in it (no database could record it)', () => {
    const bad = { ...goldenMessages.accessAcknowledgedV1, data: { ...goldenMessages.accessAcknowledgedV1.data, detail: 'done\u0000' } };
    expect(() => decodeMessage(AccessAcknowledgedV1Schema, JSON.stringify(bad))).toThrow(/NUL/);
  });

  it('rejects bytes that are not JSON, and an empty value', () => {
    expect(() => decodeMessage(AccessAcknowledgedV1Schema, '{not json')).toThrow(ContractViolationError);
    expect(() => decodeMessage(AccessAcknowledgedV1Schema, null)).toThrow(ContractViolationError);
  });

  it('rejects an acknowledgement for a system id that is not a slug', () => {
    const bad = {
      ...goldenMessages.accessAcknowledgedV1,
      data: { ...goldenMessages.accessAcknowledgedV1.data, systemId: 'Stock DB; DROP' },
    };
    expect(() => decodeMessage(AccessAcknowledgedV1Schema, JSON.stringify(bad))).toThrow(/data\.systemId/);
  });

  it('refuses to encode a message that breaks its contract', () => {
    const bad = { ...goldenMessages.accessAcknowledgedV1, commandId: 'not-a-uuid' };
    expect(() => encodeMessage(AccessAcknowledgedV1Schema, bad as never)).toThrow(/commandId/);
  });
});
