import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Request } from 'express';
import type { Principal, Role } from './roles';

export const PUBLIC_ROUTE = 'portcullis:public';
export const REQUIRED_ROLES = 'portcullis:roles';

/** The route needs no authentication (health, API docs). */
export const Public = () => SetMetadata(PUBLIC_ROUTE, true);

/** The caller must hold at least one of these roles. */
export const Roles = (...roles: Role[]) => SetMetadata(REQUIRED_ROLES, roles);

/** The authenticated caller. */
export const CurrentPrincipal = createParamDecorator((_data: unknown, context: ExecutionContext): Principal => {
  return context.switchToHttp().getRequest<Request & { user: Principal }>().user;
});
