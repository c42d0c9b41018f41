import { HttpStatus } from '@nestjs/common';
import { DomainError } from '../errors/domain.errors';

/** The caller is authenticated and holds a role, but this particular action is not theirs to take. */
export class ForbiddenActionError extends DomainError {
  readonly status = HttpStatus.FORBIDDEN;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A restore request that can no longer be approved or rejected. 409 whatever the reason, so clients
 * handle one status; `error` says which: `request_expired`, `request_superseded`, `request_closed`,
 * `not_a_restore_request`.
 */
export class RequestConflictError extends DomainError {
  readonly status = HttpStatus.CONFLICT;
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
