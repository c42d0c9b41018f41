import { Inject, Injectable, Logger, Module, type OnApplicationBootstrap } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { PassportModule } from '@nestjs/passport';
import { ThrottlerModule } from '@nestjs/throttler';
import { ApiKeysModule } from '../api-keys/api-keys.module';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { ApiKeyStrategy } from './api-key.strategy';
import { AuthFailures } from './auth-failures.service';
import { AuthenticationGuard, RolesGuard } from './auth.guards';
import { JwksKeyResolver } from './jwks-key-resolver';
import { JwtStrategy } from './jwt.strategy';
import { SensitiveRouteThrottlerGuard, throttlerOptions } from './rate-limit';
import { TokenVerifier } from './token-verifier';

/** The identity provider's keys; null without single sign-on. */
export const JWKS_KEY_RESOLVER = Symbol('JWKS_KEY_RESOLVER');

/** Fetches the identity provider's keys at start, without holding the start up if it is unreachable. */
@Injectable()
class JwksWarmUp implements OnApplicationBootstrap {
  constructor(@Inject(JWKS_KEY_RESOLVER) private readonly resolver: JwksKeyResolver | null) {}

  onApplicationBootstrap(): void {
    void this.resolver?.warmUp();
  }
}

/**
 * Authentication (who is calling: JWT or API key), authorisation (may they do this) and the sensitive-route
 * rate limit, for every HTTP route — in that order (global guards run in the order they are provided here).
 */
@Module({
  imports: [
    PassportModule,
    ApiKeysModule,
    ThrottlerModule.forRootAsync({ inject: [POLICY_SERVICE_CONFIG], useFactory: throttlerOptions }),
  ],
  providers: [
    {
      provide: JWKS_KEY_RESOLVER,
      inject: [POLICY_SERVICE_CONFIG],
      useFactory: (config: PolicyServiceConfig) => {
        const oidc = config.identity.oidc;
        if (!oidc) return null;
        const log = new Logger('SingleSignOn');
        return new JwksKeyResolver({
          url: oidc.jwksUrl,
          algorithms: oidc.algorithms,
          refetchIntervalMs: oidc.jwksRefetchIntervalSeconds * 1000,
          maxAgeMs: oidc.jwksMaxAgeSeconds * 1000,
          timeoutMs: oidc.jwksTimeoutMs,
          onError: (message) => log.warn(message),
        });
      },
    },
    {
      provide: TokenVerifier,
      inject: [POLICY_SERVICE_CONFIG, JWKS_KEY_RESOLVER],
      useFactory: (config: PolicyServiceConfig, keys: JwksKeyResolver | null) => {
        const oidc = config.identity.oidc;
        return new TokenVerifier({
          local: config.auth.jwtSecret ? { secret: config.auth.jwtSecret, issuer: config.auth.issuer, audience: config.auth.audience } : null,
          sso:
            oidc && keys
              ? { keys, issuer: oidc.issuer, audience: oidc.audience, algorithms: oidc.algorithms, rolesClaim: oidc.rolesClaim, subjectClaim: oidc.subjectClaim }
              : null,
          clockToleranceSeconds: config.identity.clockToleranceSeconds,
          maxLifetimeSeconds: config.identity.maxTokenLifetimeSeconds,
        });
      },
    },
    JwksWarmUp,
    AuthFailures,
    JwtStrategy,
    ApiKeyStrategy,
    { provide: APP_GUARD, useClass: AuthenticationGuard },
    { provide: APP_GUARD, useClass: RolesGuard },
    { provide: APP_GUARD, useClass: SensitiveRouteThrottlerGuard },
  ],
})
export class AuthModule {}
