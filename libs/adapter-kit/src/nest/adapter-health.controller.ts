import { Controller, Get, HttpStatus, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { SystemStatus } from '../runtime/adapter-status';
import { AdapterHost } from './adapter.host';

export interface AdapterHealth {
  /** `ok` while the adapter consumes decisions; `degraded` (HTTP 503) while Kafka is unreachable. */
  status: 'ok' | 'degraded';
  adapterId: string;
  kind: string;
  instanceId: string;
  startedAt: string;
  kafka: { connected: boolean };
  systems: SystemStatus[];
}

@Controller('health')
export class AdapterHealthController {
  // Explicit token: adapters also run under tsx/esbuild, which emits no decorator metadata.
  constructor(@Inject(AdapterHost) private readonly host: AdapterHost) {}

  /** Failing target systems show in `systems[].lastError` but do not fail the check: restarting cannot fix them. */
  @Get()
  health(@Res({ passthrough: true }) response: Response): AdapterHealth {
    const { connected, ...status } = this.host.status();
    response.status(connected ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    return { status: connected ? 'ok' : 'degraded', ...status, kafka: { connected } };
  }
}
