import { InvalidConfigurationError, loadPolicyServiceConfig } from './policy-service.config';

const valid = {
  DATABASE_URL: 'postgres://portcullis@127.0.0.1:5432/portcullis',
  JWT_SECRET: 'x'.repeat(32),
  KAFKA_BROKERS: '127.0.0.1:9092, 127.0.0.1:9093',
};

describe('loadPolicyServiceConfig', () => {
  it('reads a valid environment with defaults', () => {
    const config = loadPolicyServiceConfig(valid);
    expect(config.port).toBe(3000);
    expect(config.kafka.brokers).toEqual(['127.0.0.1:9092', '127.0.0.1:9093']);
    expect(config.acknowledgementDeadlineSeconds).toBe(60);
    expect(config.ensureTopics).toBe(true);
  });

  it('reports every problem at once', () => {
    expect(() => loadPolicyServiceConfig({ JWT_SECRET: 'short', PORT: 'eighty' })).toThrow(InvalidConfigurationError);
    try {
      loadPolicyServiceConfig({ JWT_SECRET: 'short', PORT: 'eighty' });
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toContain('DATABASE_URL');
      expect(message).toContain('JWT_SECRET');
      expect(message).toContain('PORT');
    }
  });

  it('rejects an unknown SASL mechanism', () => {
    expect(() => loadPolicyServiceConfig({ ...valid, KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_MECHANISM: 'plain' })).toThrow(
      /KAFKA_SASL_MECHANISM/,
    );
  });
});
