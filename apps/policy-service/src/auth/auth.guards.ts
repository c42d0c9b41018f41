import { ExecutionContext, ForbiddenException, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { PUBLIC_ROUTE, REQUIRED_ROLES } from './auth.decorators';
import type { Principal, Role } from './roles';

/** Every route needs a valid bearer token unless marked `@Public()`. */
@Injectable()
export class JwtAuthGuard extends AuthGuard('jwt') {
  constructor(private readonly reflector: Reflector) {
    super();
  }

  override canActivate(context: ExecutionContext) {
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    return isPublic ? true : super.canActivate(context);
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
