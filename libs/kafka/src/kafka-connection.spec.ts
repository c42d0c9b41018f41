import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkaConnectionFromEnv, trustedCaCertificates } from './kafka-connection';
import { TEST_CA_CERTIFICATE as CA } from './testing/test-ca-certificate';

describe('Kafka connection settings: TLS', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kafka-connection-spec-'));
    writeFileSync(join(dir, 'ca.pem'), `# the cluster's CA\n${CA}\n`);
    writeFileSync(join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n');
    writeFileSync(join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is off unless asked for; KAFKA_SSL=true trusts the system CAs', () => {
    expect(kafkaConnectionFromEnv({}, 'x').ssl).toBeUndefined();
    expect(kafkaConnectionFromEnv({ KAFKA_SSL: 'false' }, 'x').ssl).toBe(false);
    expect(kafkaConnectionFromEnv({ KAFKA_SSL: '' }, 'x').ssl).toBeUndefined();
    expect(kafkaConnectionFromEnv({ KAFKA_SSL: 'true' }, 'x').ssl).toBe(true);
    expect(kafkaConnectionFromEnv({ KAFKA_SSL: ' TRUE ' }, 'x').ssl).toBe(true);
  });

  it('trusts only the CA certificates KAFKA_SSL_CA names, as a file or as PEM text (TLS on)', () => {
    expect(kafkaConnectionFromEnv({ KAFKA_SSL_CA: join(dir, 'ca.pem') }, 'x').ssl).toEqual({ ca: CA });
    expect(kafkaConnectionFromEnv({ KAFKA_SSL: 'true', KAFKA_SSL_CA: `\n${CA}\n` }, 'x').ssl).toEqual({ ca: CA });
    expect(trustedCaCertificates(`${CA}\n${CA}`)).toBe(`${CA}\n${CA}`);
  });

  it.each([
    ['a file that is not there', () => join(dir, 'missing.pem'), /KAFKA_SSL_CA: cannot read .*missing\.pem/],
    ['a key instead of a certificate', () => join(dir, 'key.pem'), /KAFKA_SSL_CA holds no PEM certificate/],
    ['a certificate that does not parse', () => join(dir, 'broken.pem'), /KAFKA_SSL_CA holds a certificate that does not parse/],
  ])('refuses %s at start, not at the first connection', (_case, file, message) => {
    expect(() => kafkaConnectionFromEnv({ KAFKA_SSL_CA: file() }, 'x')).toThrow(message);
  });

  it('refuses contradictions and values it does not understand', () => {
    expect(() => kafkaConnectionFromEnv({ KAFKA_SSL: 'false', KAFKA_SSL_CA: CA }, 'x')).toThrow(/KAFKA_SSL is false/);
    expect(() => kafkaConnectionFromEnv({ KAFKA_SSL: 'yes' }, 'x')).toThrow(/KAFKA_SSL must be true or false/);
  });
});
