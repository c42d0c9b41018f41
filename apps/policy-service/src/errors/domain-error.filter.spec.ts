import { NotFoundException, type ArgumentsHost } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { NotFoundError } from './domain.errors';
import { DomainErrorFilter } from './domain-error.filter';

/** A route layer as Express 5's router keeps it: a matcher and the methods of its route. */
function route(pattern: RegExp, methods: Record<string, boolean>) {
  return { route: { methods }, match: (path: string) => pattern.test(path) };
}

function filterOver(stack: unknown[]) {
  return new DomainErrorFilter({ httpAdapter: { getInstance: () => ({ router: { stack } }) } } as unknown as HttpAdapterHost);
}

function answer(filter: DomainErrorFilter, method: string, path: string, exception: unknown) {
  const sent: { status?: number; headers: Record<string, string>; body?: unknown; ended?: boolean } = { headers: {} };
  const response = {
    setHeader: (name: string, value: string) => (sent.headers[name.toLowerCase()] = value),
    status: (code: number) => {
      sent.status = code;
      return response;
    },
    json: (body: unknown) => (sent.body = body),
    end: () => (sent.ended = true),
  };
  const host = {
    getType: () => 'http',
    switchToHttp: () => ({ getResponse: () => response, getRequest: () => ({ method, path }) }),
  } as unknown as ArgumentsHost;
  filter.catch(exception, host);
  return sent;
}

describe('DomainErrorFilter: 404 or 405', () => {
  const notFound = (method: string, path: string) => new NotFoundException(`Cannot ${method} ${path}`);
  const filter = filterOver([
    { match: () => true }, // a middleware layer: no route
    route(/^\/api\/v1\/groups\/[^/]+$/, { get: true, put: true }),
    route(/^\/api\/v1\/groups\/revoke$/, { post: true }),
    route(/^\/api\/v1\/anything\/.*$/, { _all: true }),
    { route: { methods: { get: true } }, match: () => { throw new URIError('bad escape'); } },
  ]);

  it('answers 405 with Allow when routes take the path with other methods (their union, HEAD with GET)', () => {
    expect(answer(filter, 'DELETE', '/api/v1/groups/stock', notFound('DELETE', '/api/v1/groups/stock'))).toEqual({
      status: 405,
      headers: { allow: 'GET, HEAD, PUT, OPTIONS' },
      body: { statusCode: 405, error: 'method_not_allowed', message: 'DELETE is not allowed here; allowed: GET, HEAD, PUT, OPTIONS' },
    });
    expect(answer(filter, 'PATCH', '/api/v1/groups/revoke', notFound('PATCH', '/api/v1/groups/revoke')).headers.allow).toBe('GET, HEAD, POST, PUT, OPTIONS');
  });

  it('answers OPTIONS with 204 and Allow', () => {
    expect(answer(filter, 'OPTIONS', '/api/v1/groups/stock', notFound('OPTIONS', '/api/v1/groups/stock'))).toEqual({
      status: 204,
      headers: { allow: 'GET, HEAD, PUT, OPTIONS' },
      ended: true,
    });
  });

  it('keeps a 404 raised on a route that takes the method, on a path no route takes, and under a route of every method', () => {
    for (const [method, path] of [['GET', '/api/v1/groups/stock'], ['GET', '/api/v1/nothing'], ['DELETE', '/api/v1/anything/x']]) {
      const sent = answer(filter, method, path, notFound(method, path));
      expect(sent.status).toBe(404);
      expect(sent.headers.allow).toBeUndefined();
    }
  });

  it('leaves other errors alone, a domain 404 included', () => {
    const sent = answer(filter, 'DELETE', '/api/v1/groups/stock', new NotFoundError('group', 'stock'));
    expect(sent.status).toBe(404);
    expect(sent.headers.allow).toBeUndefined();
  });
});
