import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { flushAdapterLogs } from '../logging/json.logger';
import type { AdapterStatus } from '../runtime/adapter-status';
import type { StartableAdapter } from '../runtime/running-adapter';

export const STARTABLE_ADAPTER = Symbol('STARTABLE_ADAPTER');

/** Ties the adapter's lifetime to the Nest application's: started on bootstrap, stopped on shutdown. */
@Injectable()
export class AdapterHost implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(@Inject(STARTABLE_ADAPTER) private readonly adapter: StartableAdapter) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.adapter.start();
  }

  async onApplicationShutdown(): Promise<void> {
    try {
      await this.adapter.stop();
    } finally {
      flushAdapterLogs(); // before Nest re-raises the signal, which ends the process without an `exit` event
    }
  }

  status(): AdapterStatus {
    return this.adapter.status();
  }
}
