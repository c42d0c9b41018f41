import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { createKafka, ReliableProducer } from '@portcullis/kafka';
import type { Kafka } from 'kafkajs';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';

export const KAFKA = Symbol('KAFKA');

/** The service's Kafka client and its one reliable producer (used by the outbox relay). */
@Global()
@Module({
  providers: [
    { provide: KAFKA, inject: [POLICY_SERVICE_CONFIG], useFactory: (config: PolicyServiceConfig) => createKafka(config.kafka) },
    { provide: ReliableProducer, inject: [KAFKA], useFactory: (kafka: Kafka) => new ReliableProducer(kafka) },
  ],
  exports: [KAFKA, ReliableProducer],
})
export class KafkaModule implements OnApplicationShutdown {
  constructor(@Inject(ReliableProducer) private readonly producer: ReliableProducer) {}

  async onApplicationShutdown(): Promise<void> {
    await this.producer.disconnect();
  }
}
