/**
 * Registers the demo systems, groups and adapter keys with a running policy service (used by docker-compose.yml;
 * `npm start` does the same itself). Needs API_URL and JWT_SECRET (and JWT_ISSUER / JWT_AUDIENCE when
 * they differ from the defaults).
 */
import { readFileSync } from 'node:fs';
import { sign } from 'jsonwebtoken';
import { seedDemoRegistry, type DemoAdapterKey } from './demo-registry';

/** `DEMO_ADAPTER_KEYS`: `{ "<adapterId>": { "keyId": "...", "publicKey": "<PEM or path>" } }`. */
function adapterKeys(): DemoAdapterKey[] {
  const raw = process.env.DEMO_ADAPTER_KEYS;
  if (!raw) return [];
  const keys = JSON.parse(raw) as Record<string, { keyId: string; publicKey: string }>;
  return Object.entries(keys).map(([adapterId, key]) => ({
    adapterId,
    keyId: key.keyId,
    publicKeyPem: key.publicKey.includes('-----BEGIN') ? key.publicKey : readFileSync(key.publicKey, 'utf8'),
  }));
}

async function main(): Promise<void> {
  const apiUrl = process.env.API_URL ?? 'http://127.0.0.1:3000/api/v1';
  const secret = process.env.JWT_SECRET;
  if (!secret) throw new Error('JWT_SECRET is required');
  const token = sign({ roles: ['admin'] }, secret, {
    subject: 'demo-seed',
    issuer: process.env.JWT_ISSUER ?? 'portcullis-local',
    audience: process.env.JWT_AUDIENCE ?? 'portcullis',
    expiresIn: '5m',
  });
  for (let attempt = 1; ; attempt++) {
    try {
      await seedDemoRegistry(apiUrl, token, { ldap: false, redis: false }, adapterKeys());
      console.log('demo systems and groups registered');
      return;
    } catch (error) {
      if (attempt >= 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
