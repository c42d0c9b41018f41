import { HttpStatus } from '@nestjs/common';

/**
 * Errors a client can cause or act on. Each has a stable code a user can quote; the mapping to HTTP is
 * done once, in `DomainErrorFilter`.
 */
export abstract class DomainError extends Error {
  abstract readonly status: HttpStatus;
  abstract readonly code: string;
}

export class NotFoundError extends DomainError {
  readonly status = HttpStatus.NOT_FOUND;
  readonly code = 'not_found';
  constructor(kind: string, id: string) {
    super(`${kind} "${id}" does not exist`);
  }
}

export class AlreadyExistsError extends DomainError {
  readonly status = HttpStatus.CONFLICT;
  readonly code = 'already_exists';
  constructor(kind: string, id: string) {
    super(`${kind} "${id}" already exists`);
  }
}

export class InvalidReferenceError extends DomainError {
  readonly status = HttpStatus.BAD_REQUEST;
  readonly code = 'invalid_reference';
}

export class ConflictError extends DomainError {
  readonly status = HttpStatus.CONFLICT;
  readonly code = 'conflict';
}

/** The service cannot take the request now (too much waiting); nothing was recorded. Retry shortly. */
export class ServiceBusyError extends DomainError {
  readonly status = HttpStatus.SERVICE_UNAVAILABLE;
  readonly code = 'busy';
  /** Sent as `Retry-After`. */
  readonly retryAfterSeconds = 1;
}
