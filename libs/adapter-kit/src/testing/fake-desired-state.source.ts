import { encodeMessage, SystemAccessChangedV1Schema, type SystemAccessChangedV1 } from '@portcullis/contracts';
import type { DesiredStateHandler, DesiredStateRecord, DesiredStateSource } from '../messaging/desired-state.source';

/** A desired-state topic in memory: tests push records and await their handling. */
export class FakeDesiredStateSource implements DesiredStateSource {
  connected = false;
  private handler?: DesiredStateHandler;
  private offset = 0;

  async start(handler: DesiredStateHandler): Promise<void> {
    this.handler = handler;
    this.connected = true;
  }

  async stop(): Promise<void> {
    this.handler = undefined;
    this.connected = false;
  }

  isConnected(): boolean {
    return this.connected;
  }

  /** Delivers a decision as the policy service would publish it (keyed by system id). */
  deliver(event: SystemAccessChangedV1): Promise<void> {
    return this.deliverRaw(event.data.systemId, encodeMessage(SystemAccessChangedV1Schema, event));
  }

  async deliverRaw(key: string | null, value: Buffer | string | null): Promise<void> {
    if (!this.handler) throw new Error('FakeDesiredStateSource is not started');
    const record: DesiredStateRecord = {
      key,
      value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
      partition: 0,
      offset: String(this.offset++),
    };
    await this.handler(record);
  }
}
