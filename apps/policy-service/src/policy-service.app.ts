import { Logger, ValidationPipe, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { createKafka, ensureTopics, portcullisTopicSpecs } from '@portcullis/kafka';
import { KafkaEventServer } from '@portcullis/kafka/nest';
import { PolicyServiceModule } from './app.module';
import type { PolicyServiceConfig } from './config/policy-service.config';

export const API_PREFIX = 'api/v1';

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
  app.useBodyParser('json', { limit: '256kb' });
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
      .build(),
  );
  SwaggerModule.setup('api/docs', app, document);
  await app.startAllMicroservices();
  await app.listen(config.port, '0.0.0.0');
  return app;
}
