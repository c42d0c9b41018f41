import {
  ACCESS_ACKNOWLEDGED,
  AccessAcknowledgedV1Schema,
  encodeSignedMessage,
  envelopeHeader,
  type AccessAcknowledgedV1,
} from '@portcullis/contracts';
import { PolicyApi } from '@test/support/policy-api';
import { startPolicyService, type RunningPolicyService } from '@test/support/policy-service.harness';
import { readTestEnv } from '@test/support/test-env';
import { testKeys } from '@test/support/test-keys';
import { randomBytes } from 'node:crypto';
import { AcknowledgementsService, type ReceivedReport } from '../src/acknowledgements/acknowledgements.service';

/**
 * Batches of adapter reports handed in together (the transport consumes every partition at once) are
 * recorded in one transaction; when that fails, each batch alone, so one bad batch holds up no other.
 * The reports are signed by the registered adapter key and recorded through the service itself; no adapter
 * runs (the service's own Kafka consumer sees none of these reports).
 */
/** The service's private step that records batches in one transaction, spied on. */
type Recorder = { recordInOneTransaction(checked: { report: { messageId: string } }[]): Promise<void> };

describe('acknowledgements: group commit of concurrent batches', () => {
  const env = readTestEnv();
  const suffix = randomBytes(3).toString('hex');
  const adapterId = `gc-adapter-${suffix}`;
  const systems = [1, 2, 3, 4].map((n) => `gc-s${n}-${suffix}`);
  let service: RunningPolicyService;
  let api: PolicyApi;
  let acknowledgements: AcknowledgementsService;

  function enforced(commandId: string, systemId: string, generation: number): ReceivedReport {
    const report: AccessAcknowledgedV1 = {
      ...envelopeHeader(`adapter-postgres/${adapterId}`),
      type: ACCESS_ACKNOWLEDGED,
      version: 1,
      commandId,
      generation,
      data: { adapterId, systemId, desiredState: 'revoked', status: 'enforced', detail: 'revoked' },
    };
    const raw = Buffer.from(encodeSignedMessage(AccessAcknowledgedV1Schema, report, testKeys.adapter(adapterId)));
    return { report, raw };
  }

  /** Revokes a new group of `systemIds`; returns one signed `enforced` report per system. */
  async function revoke(groupId: string, systemIds: string[]): Promise<{ commandId: string; reports: ReceivedReport[] }> {
    await api.createGroup(groupId, systemIds);
    const commandId = await api.decide('revoke', groupId, { reason: 'group commit spec' });
    const command = await api.command(commandId);
    return { commandId, reports: command.systems.map((system) => enforced(commandId, system.systemId, system.generation)) };
  }

  const statuses = async (commandId: string) => (await api.command(commandId)).systems.map((system) => system.status);

  beforeAll(async () => {
    service = await startPolicyService(env);
    api = new PolicyApi(service);
    for (const id of systems) await api.registerSystem(id, adapterId);
    acknowledgements = service.app.get(AcknowledgementsService);
  });

  afterAll(async () => {
    await service?.stop();
    await service?.db.end();
  });

  it('records batches handed in together in one transaction, every report with its effect', async () => {
    const first = await revoke(`gc-a-${suffix}`, [systems[0], systems[1]]);
    const second = await revoke(`gc-b-${suffix}`, [systems[2]]);
    await acknowledgements.recordReports([first.reports[0]]); // alone; also loads the adapter's key
    const recorded = jest.spyOn(acknowledgements as unknown as Recorder, 'recordInOneTransaction');
    try {
      await Promise.all([acknowledgements.recordReports([first.reports[1]]), acknowledgements.recordReports(second.reports)]);

      expect(recorded.mock.calls.map((call) => call[0].length)).toEqual([2]);
      expect(await statuses(first.commandId)).toEqual(['enforced', 'enforced']);
      expect(await statuses(second.commandId)).toEqual(['enforced']);
    } finally {
      recorded.mockRestore();
    }
  });

  it('when the merged transaction fails, records each batch alone: the bad one fails, the others land', async () => {
    const good = await revoke(`gc-c-${suffix}`, [systems[3]]);
    const bad = enforced(good.commandId, systems[0], 99);
    // A batch whose transaction fails (injected: it stands for any batch the database refuses).
    const recorder = acknowledgements as unknown as Recorder;
    const real = recorder.recordInOneTransaction.bind(acknowledgements);
    const recorded = jest.spyOn(recorder, 'recordInOneTransaction').mockImplementation(async (checked) => {
      if (checked.some((item) => item.report.messageId === bad.report.messageId)) throw new Error('refused by the database');
      return real(checked);
    });
    try {
      const outcomes = await Promise.allSettled([acknowledgements.recordReports(good.reports), acknowledgements.recordReports([bad])]);

      expect(outcomes).toEqual([{ status: 'fulfilled', value: undefined }, { status: 'rejected', reason: new Error('refused by the database') }]);
      // Together (failed), then each alone: the good batch once more (recorded), the bad one (failed).
      expect(recorded.mock.calls.map((call) => call[0].length)).toEqual([2, 1, 1]);
      expect(await statuses(good.commandId)).toEqual(['enforced']);
    } finally {
      recorded.mockRestore();
    }
  });
});
