/**
 * Makes an Ed25519 key pair for a Portcullis signer (the policy service or an adapter) and prints what to
 * configure on each side.
 *
 *   npm run keys:generate -- --out ./keys --name policy-service
 *   npm run keys:generate -- --out ./keys --name pg-main
 *
 * Writes <name>.key.pem (private, mode 0600: keep it on the signer only) and <name>.pub.pem (public: give it
 * to the verifiers — adapters trust the policy service's, an admin registers each adapter's with
 * PUT /api/v1/adapters/:adapterId/keys/:keyId).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateSigningKeyPair, parsePrivateKey, publicKeyFingerprint } from '../libs/contracts/src';

function option(name: string, fallback?: string): string {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? process.argv[index + 1] : fallback;
  if (!value) {
    console.error(`usage: npm run keys:generate -- --out <dir> --name <policy-service|adapter id>`);
    process.exit(2);
  }
  return value;
}

const out = resolve(option('out', '.'));
const name = option('name');
if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
  console.error('--name must be a lower-case slug');
  process.exit(2);
}
const privateFile = join(out, `${name}.key.pem`);
const publicFile = join(out, `${name}.pub.pem`);
if (existsSync(privateFile)) {
  console.error(`${privateFile} exists; refusing to overwrite a key (rotate under a new name and key id)`);
  process.exit(1);
}
mkdirSync(out, { recursive: true, mode: 0o700 });
const pair = generateSigningKeyPair();
writeFileSync(privateFile, pair.privateKeyPem, { mode: 0o600 });
writeFileSync(publicFile, pair.publicKeyPem);
const keyId = `${name}-${publicKeyFingerprint(parsePrivateKey(pair.privateKeyPem)).slice(0, 8)}`;
console.log(`private key  ${privateFile}  (0600; only on the signer)
public key   ${publicFile}
key id       ${keyId}

policy service:  SIGNING_KEY=${privateFile} SIGNING_KEY_ID=${keyId}
                 adapters then trust it with  "trustedKeys": { "${keyId}": "<contents or path of ${name}.pub.pem>" }
adapter:         "signingKey": { "keyId": "${keyId}", "privateKey": "${privateFile}" }
                 and an admin registers it:  PUT /api/v1/adapters/${name}/keys/${keyId}  {"publicKey": "<contents of ${name}.pub.pem>"}`);
