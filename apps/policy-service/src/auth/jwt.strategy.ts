import { Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { ExtractJwt, Strategy } from 'passport-jwt';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { ROLES, type Principal, type Role } from './roles';

interface TokenClaims {
  sub?: unknown;
  roles?: unknown;
}

/** Bearer tokens (HS256) with `sub` and `roles`, checked for signature, issuer, audience and expiry. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  constructor(@Inject(POLICY_SERVICE_CONFIG) config: PolicyServiceConfig) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      secretOrKey: config.auth.jwtSecret,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      algorithms: ['HS256'],
      ignoreExpiration: false,
    });
  }

  validate(claims: TokenClaims): Principal {
    if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > 200) {
      throw new UnauthorizedException('token has no valid "sub" claim');
    }
    const roles = Array.isArray(claims.roles) ? claims.roles : [];
    const known = roles.filter((role): role is Role => (ROLES as readonly unknown[]).includes(role));
    return { sub: claims.sub, roles: known };
  }
}
