import { AsyncLocalStorage } from 'node:async_hooks';
import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { Observable } from 'rxjs';
import type { Principal } from '../auth/roles';

/** How the caller of the request being handled proved who it is, for the audit entries it causes. */
export interface RequestCredential {
  via: NonNullable<Principal['via']>;
  /** For an API key: its name (the actor is `user:apikey:<id>`). */
  apiKeyName?: string;
}

const current = new AsyncLocalStorage<RequestCredential>();

/** The credential of the authenticated request this code runs for, if any. */
export function currentRequestCredential(): RequestCredential | undefined {
  return current.getStore();
}

/**
 * Runs every authenticated request's handler with its caller's credential in scope, so that the audit
 * log records, on the caller's own entries, whether it signed in through the identity provider, with a
 * local token or with an API key — without threading it through every service.
 */
@Injectable()
export class RequestCredentialInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const user = context.switchToHttp().getRequest<{ user?: Principal }>().user;
    if (!user?.via) return next.handle();
    const credential: RequestCredential = { via: user.via, ...(user.apiKeyName ? { apiKeyName: user.apiKeyName } : {}) };
    // The handler runs when the stream is subscribed: inside `run`, so everything it awaits sees the credential.
    return new Observable((subscriber) => current.run(credential, () => next.handle().subscribe(subscriber)));
  }
}
