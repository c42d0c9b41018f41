import {
  AccessAcknowledgedV1Schema,
  AdapterHeartbeatV1Schema,
  encodeMessage,
  type AccessAcknowledgedV1,
  type AdapterHeartbeatV1,
} from '@portcullis/contracts';
import type { AdapterEventPublisher } from '../messaging/adapter-event.publisher';

/** Records what an adapter publishes, after checking it against the contract; can be told to fail or to stall. */
export class RecordingEventPublisher implements AdapterEventPublisher {
  readonly acknowledgements: AccessAcknowledgedV1[] = [];
  readonly heartbeats: AdapterHeartbeatV1[] = [];
  /** While set, every publish rejects with this error. */
  failure?: Error;
  closed = false;
  private stalled?: Promise<void>;

  /** Publishes hang (a broker that does not answer) until the returned function is called. */
  stall(): () => void {
    let release!: () => void;
    this.stalled = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.stalled = undefined;
      release();
    };
  }

  async publishAcknowledgement(message: AccessAcknowledgedV1): Promise<void> {
    await this.stalled;
    if (this.failure) throw this.failure;
    this.acknowledgements.push(JSON.parse(encodeMessage(AccessAcknowledgedV1Schema, message)));
  }

  async publishHeartbeat(message: AdapterHeartbeatV1): Promise<void> {
    await this.stalled;
    if (this.failure) throw this.failure;
    this.heartbeats.push(JSON.parse(encodeMessage(AdapterHeartbeatV1Schema, message)));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** `status@generation` of the acknowledgements for a system, in order, e.g. `['delivered@1', 'enforced@1']`. */
  trail(systemId: string): string[] {
    return this.acknowledgements
      .filter((ack) => ack.data.systemId === systemId)
      .map((ack) => `${ack.data.status}${ack.data.willRetry === undefined ? '' : `(willRetry=${ack.data.willRetry})`}@${ack.generation}`);
  }
}
