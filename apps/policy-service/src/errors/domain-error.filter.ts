import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger, NotFoundException } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import { QueryFailedError } from 'typeorm';
import { allowedMethods, type RouteTable } from './allowed-methods';
import { DomainError, ServiceBusyError } from './domain.errors';

interface ErrorBody {
  statusCode: number;
  error: string;
  message: string | string[];
  errorId?: string;
}

/**
 * Maps every error to a JSON response once. Client mistakes get a 4xx with a clear message; anything
 * unexpected gets a 500 with an error id that is also logged, never internal details. A path that exists
 * with other methods gets 405 and `Allow`, not 404.
 */
@Catch()
export class DomainErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('HttpErrors');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw exception;
    const http = host.switchToHttp();
    const response = http.getResponse<Response>();
    const request = http.getRequest<Request>();
    const allowed = exception instanceof NotFoundException ? this.allowedOn(request) : undefined;
    if (allowed) {
      // No route took this method on a path that routes answer with others (a handler's own 404 comes from
      // a route with this very method): the method is what is wrong. OPTIONS asks for exactly this list.
      const allow = [...allowed, 'OPTIONS'].join(', ');
      response.setHeader('Allow', allow);
      const method = request.method;
      if (method === 'OPTIONS') {
        response.status(204).end();
        return;
      }
      const body: ErrorBody = { statusCode: 405, error: 'method_not_allowed', message: `${method} is not allowed here; allowed: ${allow}` };
      response.status(405).json(body);
      return;
    }
    const body = this.toBody(exception);
    if (exception instanceof ServiceBusyError) response.setHeader('Retry-After', String(exception.retryAfterSeconds));
    response.status(body.statusCode).json(body);
  }

  /** The methods routes answer on the request's path, when that is not among them; else undefined. */
  private allowedOn(request: Request): string[] | undefined {
    const table = (this.adapterHost.httpAdapter?.getInstance() as { router?: RouteTable } | undefined)?.router;
    const allowed = allowedMethods(table, request.path);
    return allowed && !allowed.includes(request.method) ? allowed : undefined;
  }

  private toBody(exception: unknown): ErrorBody {
    if (exception instanceof DomainError) {
      return { statusCode: exception.status, error: exception.code, message: exception.message };
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const response = exception.getResponse();
      const message =
        typeof response === 'object' && response !== null && 'message' in response
          ? (response as { message: string | string[] }).message
          : exception.message;
      return { statusCode: status, error: HttpStatus[status]?.toLowerCase() ?? 'error', message };
    }
    if (exception instanceof QueryFailedError) {
      const code = (exception.driverError as { code?: string } | undefined)?.code;
      // Constraint races the services check for first (two creates of the same id at once).
      if (code === '23505') return { statusCode: 409, error: 'already_exists', message: 'the resource already exists' };
      if (code === '23503') return { statusCode: 409, error: 'conflict', message: 'the resource is referenced or references a missing one' };
    }
    const errorId = randomUUID();
    this.log.error(`unexpected error ${errorId}: ${exception instanceof Error ? exception.stack : String(exception)}`);
    return { statusCode: 500, error: 'internal_error', message: 'unexpected error; quote the error id when reporting it', errorId };
  }
}
