import {
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  AdapterHeartbeatV1Schema,
  encodeMessage,
  SecurityAlertV1Schema,
  type SecurityAlertV1,
  type AccessAcknowledgedV1,
  type AccessDriftDetectedV1,
  type AdapterHeartbeatV1,
  type AdapterReportV1,
} from '@portcullis/contracts';
import type { AdapterEventPublisher } from '../messaging/adapter-event.publisher';

/** Records what an adapter publishes, after checking it against the contract; can be told to fail or to stall. */
export class RecordingEventPublisher implements AdapterEventPublisher {
  /** Acknowledgements and drift reports in the order they were published, as `Topics.acknowledgements` holds them. */
  readonly reports: AdapterReportV1[] = [];
  readonly acknowledgements: AccessAcknowledgedV1[] = [];
  readonly drifts: AccessDriftDetectedV1[] = [];
  readonly heartbeats: AdapterHeartbeatV1[] = [];
  readonly alerts: SecurityAlertV1[] = [];
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
    await this.accept();
    const recorded: AccessAcknowledgedV1 = JSON.parse(encodeMessage(AccessAcknowledgedV1Schema, message));
    this.acknowledgements.push(recorded);
    this.reports.push(recorded);
  }

  async publishDrift(message: AccessDriftDetectedV1): Promise<void> {
    await this.accept();
    const recorded: AccessDriftDetectedV1 = JSON.parse(encodeMessage(AccessDriftDetectedV1Schema, message));
    this.drifts.push(recorded);
    this.reports.push(recorded);
  }

  async publishSecurityAlert(message: SecurityAlertV1): Promise<void> {
    await this.accept();
    const recorded: SecurityAlertV1 = JSON.parse(encodeMessage(SecurityAlertV1Schema, message));
    this.alerts.push(recorded);
    this.reports.push(recorded);
  }

  async publishHeartbeat(message: AdapterHeartbeatV1): Promise<void> {
    await this.accept();
    this.heartbeats.push(JSON.parse(encodeMessage(AdapterHeartbeatV1Schema, message)));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * What was reported about a system, in order: `status@generation` per acknowledgement and
   * `drift@generation` per drift report and `alert:reason` per security alert, e.g.
   * `['delivered@1', 'enforced@1', 'drift@1', 'enforced@1', 'alert:rolled-back']`.
   */
  trail(systemId: string): string[] {
    return this.reports
      .filter((report) => report.data.systemId === systemId)
      .map((report) => {
        switch (report.type) {
          case 'access.drift-detected':
            return `drift@${report.generation}`;
          case 'adapter.security-alert':
            return `alert:${report.data.reason}`;
          case 'access.acknowledged':
            return `${report.data.status}${report.data.willRetry === undefined ? '' : `(willRetry=${report.data.willRetry})`}@${report.generation}`;
        }
      });
  }

  private async accept(): Promise<void> {
    await this.stalled;
    if (this.failure) throw this.failure;
  }
}
