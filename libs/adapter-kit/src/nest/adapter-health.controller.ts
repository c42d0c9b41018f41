import { Controller, Get, HttpStatus, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { StateStoreStatus, SystemStatus } from '../runtime/adapter-status';
import { AdapterHost } from './adapter.host';

export interface AdapterHealth {
  /**
   * `ok` while the adapter consumes decisions and can store them; `degraded` (HTTP 503) while Kafka is
   * unreachable; `failed` (HTTP 503) once the state store failed, which only a restart fixes.
   */
  status: 'ok' | 'degraded' | 'failed';
  adapterId: string;
  kind: string;
  instanceId: string;
  startedAt: string;
  kafka: { connected: boolean };
  stateStore: StateStoreStatus;
  systems: SystemStatus[];
}

@Controller('health')
export class AdapterHealthController {
  // Explicit token: adapters also run under tsx/esbuild, which emits no decorator metadata.
  constructor(@Inject(AdapterHost) private readonly host: AdapterHost) {}

  /**
   * Failing target systems show in `systems[].lastError` but do not fail the check: restarting cannot fix
   * them. A failed state store does: the adapter can enforce nothing more until it is restarted.
   */
  @Get()
  health(@Res({ passthrough: true }) response: Response): AdapterHealth {
    const { connected, ...status } = this.host.status();
    const health = status.stateStore.status === 'failed' ? 'failed' : connected ? 'ok' : 'degraded';
    response.status(health === 'ok' ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    return { status: health, ...status, kafka: { connected } };
  }
}
