import { HttpStatus, Logger, ValidationPipe, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '@portcullis/kafka';
import { KafkaEventServer } from '@portcullis/kafka/nest';
import { PolicyServiceModule } from './app.module';
import { hasLoneSurrogate } from './common/text';
import type { PolicyServiceConfig } from './config/policy-service.config';

export const API_PREFIX = 'api/v1';
const DOCS_PATH = '/api/docs';
/** Largest accepted request body (JSON only). */
export const MAX_BODY = '256kb';

/**
 * Builds the policy service: the HTTP API plus a Kafka microservice (acknowledgements and heartbeats)
 * in one Nest application. Used by main.ts and by the integration tests.
 */
export async function createPolicyService(
  config: PolicyServiceConfig,
  options: { logger?: false | ('log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal')[] } = {},
): Promise<INestApplication> {
  if (config.ensureTopics) {
    const created = await ensureTopics(createKafka(config.kafka), portcullisTopicSpecs(config.topicPartitions));
    if (created.length) new Logger('Topics').log(`created ${created.join(', ')}`);
  }
  const app = await NestFactory.create<NestExpressApplication>(PolicyServiceModule.forRoot(config), {
    logger: options.logger ?? ['log', 'error', 'warn', 'fatal'],
    bodyParser: false,
  });
  hardenHttp(app, config);
  app.setGlobalPrefix(API_PREFIX);
  app.useGlobalPipes(
    new ValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      stopAtFirstError: false,
    }),
  );
  app.enableShutdownHooks();
  app.connectMicroservice(
    { strategy: new KafkaEventServer({ kafka: createKafka(config.kafka), groupId: config.consumerGroupId }) },
    { inheritAppConfig: false },
  );
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Portcullis policy service')
      .setDescription('Revoke and restore access to groups of systems; follow enforcement; review the history.')
      .setVersion('1')
      .addBearerAuth()
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'an API key, pcl_<id>_<secret>' }, 'api-key')
      .build(),
  );
  SwaggerModule.setup('api/docs', app, document);
  await app.startAllMicroservices();
  await app.listen(config.port, '0.0.0.0');
  return app;
}

/**
 * HTTP hardening, before any route: security headers, the client address behind proxies, and request
 * bodies — JSON only (415 otherwise), at most MAX_BODY (413), malformed JSON 400 — answered as JSON errors
 * shaped like every other (`{statusCode, error, message}`), never an HTML page or a 500.
 */
function hardenHttp(app: NestExpressApplication, config: PolicyServiceConfig): void {
  app.disable('x-powered-by');
  // Which X-Forwarded-For hops to believe for `req.ip` (audit source address, per-address limits).
  app.set('trust proxy', config.trustProxy);
  app.use(securityHeaders());
  app.use((request: Request, response: Response, next: NextFunction) => {
    // Decisions, keys and history are not for shared caches (an API key is in exactly one response).
    if (request.path.startsWith(`/${API_PREFIX}/`)) response.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(requireJsonBodies);
  app.use(refuseNulInUrl);
  app.useBodyParser('json', { limit: MAX_BODY, reviver: refuseUnstorableText });
  app.use(bodyParserErrors);
}

/**
 * helmet's headers everywhere (nosniff, no framing, no referrer, HSTS, ...). The API answers only JSON,
 * so its CSP allows nothing; the Swagger UI at /api/docs loads its own scripts and styles (and uses
 * inline styles and data: images), so it gets a CSP that allows exactly that, from this origin only.
 */
function securityHeaders(): RequestHandler {
  const common = {
    frameguard: { action: 'deny' as const },
    referrerPolicy: { policy: 'no-referrer' as const },
    crossOriginResourcePolicy: { policy: 'same-origin' as const },
  };
  const api = helmet({
    ...common,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
    },
  });
  const docs = helmet({
    ...common,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
  });
  return (request, response, next) => (request.path.startsWith(DOCS_PATH) ? docs : api)(request, response, next);
}

function sendError(response: Response, statusCode: number, error: string, message: string): void {
  response.status(statusCode).json({ statusCode, error, message });
}

/** A request that carries a body must say it is JSON; anything else is refused before it is read. */
function requireJsonBodies(request: Request, response: Response, next: NextFunction): void {
  const length = Number(request.headers['content-length'] ?? 0);
  const hasBody = request.headers['transfer-encoding'] !== undefined || length > 0;
  if (hasBody && !request.is('application/json')) {
    return sendError(response, 415, 'unsupported_media_type', 'request bodies must be JSON (content-type: application/json)');
  }
  next();
}

/**
 * PostgreSQL cannot store NUL in text or jsonb: a NUL that reached a query would be a 500 (and could
 * stall whatever retries it). Refused where it arrives instead: in JSON bodies (400, as malformed JSON)...
 * A lone UTF-16 surrogate is stored, but as U+FFFD, so the recorded text would differ from the text that
 * was checked, compared and signed: refused here too.
 */
function refuseUnstorableText(key: string, value: unknown): unknown {
  if (typeof value === 'string' && value.includes('\u0000')) throw new SyntaxError('strings must not contain NUL characters');
  if ((typeof value === 'string' && hasLoneSurrogate(value)) || hasLoneSurrogate(key)) {
    throw new SyntaxError('strings must be Unicode text (a lone UTF-16 surrogate is not)');
  }
  // No field of any request is called that; as an own property it could become an object's prototype downstream.
  if (key === '__proto__') throw new SyntaxError('"__proto__" is not a field of any request');
  return value;
}

/** ... and in the path or query string. */
function refuseNulInUrl(request: Request, response: Response, next: NextFunction): void {
  if (/%00/i.test(request.originalUrl)) return sendError(response, 400, 'bad_request', 'the URL must not contain NUL characters');
  next();
}

/** body-parser's errors (too large, malformed, unsupported charset) as 4xx JSON; anything else goes on. */
function bodyParserErrors(error: unknown, _request: Request, response: Response, next: NextFunction): void {
  const failure = error as { type?: string; status?: number; message?: string } | null;
  if (!failure || typeof failure.status !== 'number' || failure.status < 400 || failure.status >= 500) return next(error);
  switch (failure.type) {
    case 'entity.too.large':
      return sendError(response, 413, 'payload_too_large', `request body larger than ${MAX_BODY}`);
    case 'entity.parse.failed':
      return sendError(response, 400, 'bad_request', `request body is not valid JSON: ${failure.message ?? ''}`.trim());
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return sendError(response, 415, 'unsupported_media_type', failure.message ?? 'unsupported body encoding');
    default:
      return sendError(response, failure.status, HttpStatus[failure.status]?.toLowerCase() ?? 'bad_request', failure.message ?? 'bad request body');
  }
}
