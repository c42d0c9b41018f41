import { Injectable, SetMetadata, type ExecutionContext } from '@nestjs/common';
import { normalizeIp, ThrottlerGuard, type ThrottlerModuleOptions } from '@nestjs/throttler';
import type { PolicyServiceConfig } from '../config/policy-service.config';
import type { Principal } from './roles';

/** The named @nestjs/throttler throttler used for sensitive routes. */
export const SENSITIVE_THROTTLER = 'sensitive';
const SENSITIVE_ROUTE = 'portcullis:sensitive-route';

/**
 * Puts a route (or a whole controller) under the `sensitive` rate limit: at most `SENSITIVE_RATE_LIMIT`
 * calls per `SENSITIVE_RATE_LIMIT_WINDOW_SECONDS` per caller (its principal; its address when anonymous),
 * counted per route; beyond that, 429 with a JSON error and `Retry-After-sensitive`. For API-key creation,
 * approvals and rejections — not for revoke/restore, which an incident (or the benchmark) may send in bulk.
 *
 *   @Post(':id/approve')
 *   @Roles('security-lead')
 *   @SensitiveRateLimit()
 *   approve(...) {}
 *
 * A route may set its own numbers on top with `@Throttle({ sensitive: { limit: 5, ttl: 60_000 } })`.
 * Routes without it are not throttled at all (only failed authentications are, per source address).
 */
export const SensitiveRateLimit = () => SetMetadata(SENSITIVE_ROUTE, true);

export function throttlerOptions(config: PolicyServiceConfig): ThrottlerModuleOptions {
  const { sensitiveLimit, sensitiveWindowSeconds } = config.rateLimits;
  return {
    throttlers: [{ name: SENSITIVE_THROTTLER, limit: sensitiveLimit, ttl: sensitiveWindowSeconds * 1000 }],
    errorMessage: (_context, detail) =>
      `too many requests: at most ${detail.limit} per ${Math.round(detail.ttl / 1000)} s on this route; retry in ${detail.timeToBlockExpire} s`,
  };
}

/**
 * @nestjs/throttler's guard, applied only to routes marked `@SensitiveRateLimit()`. It runs after
 * authentication, so a caller is counted by principal — an attacker with a stolen token cannot spread
 * calls over addresses, and colleagues behind one NAT do not share a budget.
 */
@Injectable()
export class SensitiveRouteThrottlerGuard extends ThrottlerGuard {
  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    return !this.reflector.getAllAndOverride<boolean>(SENSITIVE_ROUTE, [context.getHandler(), context.getClass()]);
  }

  protected override async getTracker(request: Record<string, any>): Promise<string> {
    const principal = request.user as Principal | undefined;
    return principal ? `principal:${principal.sub}` : `address:${normalizeIp(request.ip ?? 'unknown')}`;
  }
}
