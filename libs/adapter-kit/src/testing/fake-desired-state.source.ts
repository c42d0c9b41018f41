import { encodeSignedMessage, SystemAccessChangedV1Schema, type SigningKey, type SystemAccessChangedV1 } from '@portcullis/contracts';
import { testPolicySigningKey } from './test-signing-keys';
import type { DesiredStateHandler, DesiredStateRecord, DesiredStateSource } from '../messaging/desired-state.source';

/** A desired-state topic in memory: tests push records and await their handling. */
export class FakeDesiredStateSource implements DesiredStateSource {
  connected = false;
  private handler?: DesiredStateHandler;
  private caughtUp?: () => void;
  private offset = 0;

  /**
   * `caughtUpAtStart` (default): the topic held nothing when the source started, so catch-up ends at once.
   * Without it, a test delivers the history (`catchUp: true`) and then calls `endCatchUp()`.
   */
  constructor(private readonly options: { caughtUpAtStart?: boolean } = {}) {}

  /** Where the next record lands (a topic keeps growing across adapter restarts). */
  get nextOffset(): number {
    return this.offset;
  }

  async start(handler: DesiredStateHandler, _serves?: (key: string) => boolean, caughtUp?: () => void): Promise<void> {
    this.handler = handler;
    this.caughtUp = caughtUp;
    this.connected = true;
    if (this.options.caughtUpAtStart !== false) caughtUp?.();
  }

  /** Every record of the history has been delivered: what a real source signals after catch-up. */
  endCatchUp(): void {
    this.caughtUp?.();
  }

  async stop(): Promise<void> {
    this.handler = undefined;
    this.connected = false;
  }

  isConnected(): boolean {
    return this.connected;
  }

  /** Delivers a decision as the policy service would publish it: keyed by system id, signed with its key. */
  deliver(event: SystemAccessChangedV1, key: SigningKey = testPolicySigningKey): Promise<void> {
    return this.deliverRaw(event.data.systemId, encodeSignedMessage(SystemAccessChangedV1Schema, event, key));
  }

  /**
   * Delivers exactly these bytes; `catchUp` marks a record as read from the topic's history, `offset`
   * delivers it again at the offset it had (a restart reading the topic from its beginning).
   */
  async deliverRaw(
    key: string | null,
    value: Buffer | string | null,
    options: { catchUp?: boolean; offset?: number; partitionEnd?: number } = {},
  ): Promise<void> {
    if (!this.handler) throw new Error('FakeDesiredStateSource is not started');
    const record: DesiredStateRecord = {
      key,
      value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
      partition: 0,
      offset: String(options.offset ?? this.offset++),
      catchUp: options.catchUp,
      partitionEnd: options.partitionEnd === undefined ? undefined : String(options.partitionEnd),
    };
    await this.handler(record);
  }
}
