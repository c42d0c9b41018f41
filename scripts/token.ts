/**
 * Prints a local HS256 bearer token for the demo stack (or for any policy service whose JWT_SECRET you hold):
 *
 *   npm run --silent token -- --sub alice --roles security-lead
 *   npm run --silent token -- --sub audrey --roles auditor --ttl 1h
 *   npm run --silent token -- --sub ada --roles admin,auditor        # several roles
 *
 * The secret, issuer and audience come from JWT_SECRET / JWT_ISSUER / JWT_AUDIENCE when set, otherwise
 * from the running local stack (.portcullis/stack/stack.json). The token carries no `kid`, which is how
 * the service tells it from a single sign-on token (those are verified against OIDC_JWKS_URL instead).
 * For automation, prefer an API key (`POST /api/v1/api-keys`): it can be revoked on its own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { decode, sign } from 'jsonwebtoken';

const ROLES = ['security-lead', 'auditor', 'admin'];

function fail(message: string): never {
  console.error(`token: ${message}`);
  process.exit(2);
}

const { values } = parseArgs({
  options: { sub: { type: 'string' }, roles: { type: 'string' }, ttl: { type: 'string', default: '8h' } },
  strict: true,
});
if (!values.sub) fail('--sub is required (who the token is for)');
const roles = (values.roles ?? '').split(',').map((role) => role.trim()).filter(Boolean);
const unknown = roles.filter((role) => !ROLES.includes(role));
if (roles.length === 0 || unknown.length > 0) fail(`--roles must list some of ${ROLES.join(', ')}`);

const stackFile = join(resolve(__dirname, '..'), '.portcullis', 'stack', 'stack.json');
const stack = existsSync(stackFile) ? (JSON.parse(readFileSync(stackFile, 'utf8')) as { jwt?: Record<string, string> }).jwt : undefined;
const secret = process.env.JWT_SECRET ?? stack?.secret;
if (!secret) fail('no JWT_SECRET set and no local stack running (start it with `npm start`)');
if (secret.length < 32) fail('JWT_SECRET must be at least 32 characters (the policy service refuses a shorter one)');

const token = sign({ roles }, secret, {
  subject: values.sub,
  issuer: process.env.JWT_ISSUER ?? stack?.issuer ?? 'portcullis-local',
  audience: process.env.JWT_AUDIENCE ?? stack?.audience ?? 'portcullis',
  expiresIn: values.ttl as `${number}h`,
  algorithm: 'HS256',
});
// The policy service refuses a token valid for longer than JWT_MAX_LIFETIME_SECONDS: do not hand one out.
const { iat, exp } = decode(token) as { iat: number; exp: number };
const maxLifetime = Number(process.env.JWT_MAX_LIFETIME_SECONDS ?? 86400);
if (exp - iat > maxLifetime) fail(`--ttl ${values.ttl} is longer than the policy service accepts (JWT_MAX_LIFETIME_SECONDS, ${maxLifetime} s)`);
process.stdout.write(token + '\n');
