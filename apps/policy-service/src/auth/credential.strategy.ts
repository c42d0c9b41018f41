import type { Request } from 'express';
import { Strategy } from 'passport-strategy';
import { AuthenticationFailure } from './credentials';

/** Passed to `fail` by a strategy when the request carries no credential of its kind. */
export const NOT_MY_CREDENTIAL = 'not-my-credential';

type VerifyRequest = (request: Request, done: (error: unknown, user?: unknown) => void) => void;

/**
 * A minimal passport strategy that hands the whole request to the Nest strategy's `validate(request)`
 * (through @nestjs/passport's `PassportStrategy`, which supplies the callback). `validate` returns:
 * - a principal → success;
 * - null → this credential kind is not present (passport tries the next strategy);
 * - throws AuthenticationFailure → present but refused (the failure is the challenge, for the guard);
 * - throws anything else → an error (500), e.g. the database is down.
 */
export class RequestCredentialStrategy extends Strategy {
  constructor(private readonly verifyRequest: VerifyRequest) {
    super();
  }

  override authenticate(request: Request): void {
    this.verifyRequest(request, (error, user) => {
      if (error instanceof AuthenticationFailure) return this.fail(error, 401);
      if (error) return this.error(error as Error);
      if (!user) return this.fail(NOT_MY_CREDENTIAL, 401);
      return this.success(user);
    });
  }
}
