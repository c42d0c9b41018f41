import { ExecutionContext, ForbiddenException, HttpException, HttpStatus, Injectable, UnauthorizedException, type CanActivate } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import passport from 'passport';
import { ApiKeyStrategy } from './api-key.strategy';
import { PUBLIC_ROUTE, REQUIRED_ROLES } from './auth.decorators';
import { AuthFailures } from './auth-failures.service';
import { AuthenticationFailure, readCredential, sourceAddress, unverifiedText } from './credentials';
import { JwtStrategy } from './jwt.strategy';
import type { Principal, Role } from './roles';

const CHALLENGE = 'Bearer realm="portcullis"';

/**
 * Every route needs a valid credential unless marked `@Public()`: a bearer JWT (local or single sign-on)
 * or an API key — passport tries the `api-key` then the `jwt` strategy; each only takes its own kind.
 *
 * The guard runs passport with THIS application's strategy instances (one fresh object per request, as
 * passport does for named strategies) rather than by name: names live in passport's process-wide
 * registry, where a second policy service in the same process (tests) would replace the first one's
 * strategies — its secret, its JWKS, its database of API keys.
 *
 * A credential that is present but refused is a failed login: it counts against the source address
 * (`AUTH_FAILURE_LIMIT` per `AUTH_FAILURE_WINDOW_SECONDS`; then 429 for the rest of the window, whatever
 * is sent) and is written to the audit history as `auth.failed` (coalesced per address, see
 * AuthFailureAuditor). A request without any credential just gets 401.
 */
@Injectable()
export class AuthenticationGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly failures: AuthFailures,
    private readonly apiKeyStrategy: ApiKeyStrategy,
    private readonly jwtStrategy: JwtStrategy,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (isPublic) return true;
    const request = context.switchToHttp().getRequest<Request>();
    const response = context.switchToHttp().getResponse<Response>();
    const address = sourceAddress(request);

    const credential = readCredential(request);
    if (credential.kind === 'none') {
      response.setHeader('WWW-Authenticate', CHALLENGE);
      throw new UnauthorizedException('authentication required: send Authorization: Bearer <token or API key>, or X-API-Key');
    }
    try {
      if (credential.kind === 'unusable') {
        throw new AuthenticationFailure(credential.reason, { credential: 'unusable', publicMessage: credential.reason });
      }
      (request as Request & { user?: Principal }).user = await this.authenticate(request, response);
      return true;
    } catch (error) {
      if (!(error instanceof AuthenticationFailure)) throw error;
      // Only failures are limited: a credential that verifies always gets in, so nobody sharing an address
      // with the responders (a NAT, a proxy) can lock them out mid-incident by sending bad tokens.
      // (Nothing is learnt from that: tokens are signatures and API keys 256-bit secrets, not guessable.)
      const wait = this.failures.limiter.blockedFor(address);
      if (wait > 0) {
        this.failures.auditor.noteRefused(address);
        response.setHeader('Retry-After', String(wait));
        throw new HttpException(
          { statusCode: HttpStatus.TOO_MANY_REQUESTS, message: `too many failed authentications from this address; retry in ${wait} s` },
          HttpStatus.TOO_MANY_REQUESTS,
        );
      }
      this.failures.limiter.recordFailure(address);
      await this.failures.auditor.record({
        sourceAddress: address,
        method: request.method,
        // Path only: a query string could carry anything.
        path: unverifiedText(request.originalUrl.split('?')[0], 300) ?? '/',
        reason: error.reason,
        credential: error.details.credential,
        unverifiedSubject: error.details.unverifiedSubject,
        unverifiedApiKeyId: error.details.unverifiedApiKeyId,
      });
      response.setHeader('WWW-Authenticate', `${CHALLENGE}, error="invalid_token"`);
      throw new UnauthorizedException(error.publicMessage);
    }
  }

  /** The principal, or the AuthenticationFailure of the strategy whose kind of credential was sent. */
  private authenticate(request: Request, response: Response): Promise<Principal> {
    const strategies = [Object.create(this.apiKeyStrategy), Object.create(this.jwtStrategy)] as unknown as string[];
    return new Promise<Principal>((resolve, reject) => {
      const outcome = (error: unknown, user: Principal | false, info: unknown) => {
        if (error) return reject(error);
        if (user) return resolve(user);
        const challenges = Array.isArray(info) ? info : [info];
        const failure = challenges.find((challenge): challenge is AuthenticationFailure => challenge instanceof AuthenticationFailure);
        reject(failure ?? new AuthenticationFailure('credential not accepted by any method', { credential: 'unusable' }));
      };
      passport.authenticate(strategies, { session: false }, outcome)(request, response, (error: unknown) =>
        reject(error ?? new Error('authentication ended without an outcome')),
      );
    });
  }
}

/** Routes marked `@Roles(...)` need one of those roles; a route without `@Roles` is refused (deny by default). */
@Injectable()
export class RolesGuard {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, targets)) return true;
    const required = this.reflector.getAllAndOverride<Role[] | undefined>(REQUIRED_ROLES, targets);
    const principal = context.switchToHttp().getRequest<Request & { user?: Principal }>().user;
    if (!required || !principal || !principal.roles.some((role) => required.includes(role))) {
      throw new ForbiddenException(`requires one of the roles: ${(required ?? []).join(', ') || '(none allowed)'}`);
    }
    return true;
  }
}
