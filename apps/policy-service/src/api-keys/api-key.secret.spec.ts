import { createHash } from 'node:crypto';
import { API_KEY_PATTERN, apiKeyMatches, generateApiKey, hashApiKey, parseApiKeyId } from './api-key.secret';

describe('API key secrets', () => {
  it('generates pcl_<16 hex id>_<43 base64url characters = 256 bits>, unique each time', () => {
    const keys = Array.from({ length: 50 }, () => generateApiKey());
    for (const { id, key } of keys) {
      expect(key).toMatch(API_KEY_PATTERN);
      expect(key.startsWith(`pcl_${id}_`)).toBe(true);
      expect(Buffer.from(key.slice(`pcl_${id}_`.length), 'base64url')).toHaveLength(32);
    }
    expect(new Set(keys.map((key) => key.key)).size).toBe(50);
    expect(new Set(keys.map((key) => key.id)).size).toBe(50);
  });

  it('stores only the SHA-256 of the key', () => {
    const { key, hash } = generateApiKey();
    expect(hash).toEqual(createHash('sha256').update(key).digest());
    expect(hash.toString('hex')).not.toContain(key);
    expect(hashApiKey(key)).toHaveLength(32);
  });

  it('parses the id of a well-formed key and nothing else', () => {
    const { id, key } = generateApiKey();
    expect(parseApiKeyId(key)).toBe(id);
    expect(parseApiKeyId(`${key}x`)).toBeNull();
    expect(parseApiKeyId(key.replace('pcl_', 'pcx_'))).toBeNull();
    expect(parseApiKeyId(`pcl_${id.toUpperCase()}_${key.slice(21)}`)).toBeNull();
    expect(parseApiKeyId('pcl_')).toBeNull();
  });

  it('matches only the exact key', () => {
    const { key, hash } = generateApiKey();
    expect(apiKeyMatches(key, hash)).toBe(true);
    const last = key.at(-1) === 'A' ? 'B' : 'A';
    expect(apiKeyMatches(key.slice(0, -1) + last, hash)).toBe(false);
    expect(apiKeyMatches(key, Buffer.alloc(16))).toBe(false);
    expect(apiKeyMatches(generateApiKey().key, hash)).toBe(false);
  });
});
