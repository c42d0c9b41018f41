/**
 * A throwaway certificate authority and one server certificate for 127.0.0.1 and localhost, made with the
 * `openssl` command line (present wherever the JDK is: Debian's ca-certificates depends on it), for the
 * TLS listeners of the local stack's and the tests' servers. Clients trust `caFile` and nothing else.
 *
 * The CA's private key is deleted as soon as the server certificate is signed: nothing can be signed with
 * it afterwards. The server's key is kept in the keystore only. Made once per directory, in a temporary
 * directory renamed into place when complete (a crash half-way leaves nothing that looks finished); a server
 * restarted on the same directory keeps its certificate while it is valid for another day, so clients that
 * hold the CA still connect. Never for production, where certificates come from the organisation's CA
 * (docs/kafka-security.md).
 *
 * Plain TypeScript/CommonJS, no Nest imports.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ServerTls {
  /** PEM of the CA certificate: what clients trust. */
  readonly caFile: string;
  /** PEM of the server certificate (signed by the CA; SAN IP:127.0.0.1, DNS:localhost). */
  readonly certificateFile: string;
  /** PKCS12 with the server's key and certificate chain (for the JVM). */
  readonly keystoreFile: string;
  /** One line, [A-Za-z0-9_-]: the keystore's password. */
  readonly keystorePasswordFile: string;
}

const DAYS = '30';

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.error) throw new Error(`openssl could not run (${result.error.message}); install the openssl package`);
  if (result.status !== 0) throw new Error(`openssl ${args[0]} failed (exit ${result.status}): ${result.stderr.trim()}`);
}

/** Where `throwawayServerTls(dir)` keeps its files (nothing is made). */
export const serverTlsFiles = (dir: string): ServerTls => ({
  caFile: path.join(dir, 'ca.pem'),
  certificateFile: path.join(dir, 'server.pem'),
  keystoreFile: path.join(dir, 'server.p12'),
  keystorePasswordFile: path.join(dir, 'server.p12.password'),
});

/** Whether `dir` holds a finished set whose certificate is valid for at least another day. */
function usable(files: ServerTls): boolean {
  if (!Object.values(files).every((file) => fs.existsSync(file))) return false;
  try {
    return new Date(new X509Certificate(fs.readFileSync(files.certificateFile)).validTo).getTime() > Date.now() + 86_400_000;
  } catch {
    return false;
  }
}

/** The files in `dir`, made there first unless a finished, still valid set is there. */
export function throwawayServerTls(dir: string): ServerTls {
  const files = serverTlsFiles(dir);
  if (usable(files)) return files;
  const staging = `${dir}.staging-${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    makeIn(staging);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(staging, dir);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  return files;
}

function makeIn(dir: string): void {
  const files = serverTlsFiles(dir);
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    ['req', '-x509', ...curve, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', DAYS, '-subj', '/CN=Portcullis throwaway CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  openssl(['req', ...curve, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n',
  );
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(16).toString('hex')}`,
      '-days', DAYS, '-extfile', 'server.ext', '-out', 'server.pem'],
    dir,
  );
  fs.writeFileSync(files.keystorePasswordFile, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  openssl(
    ['pkcs12', '-export', '-in', 'server.pem', '-inkey', 'server.key', '-certfile', 'ca.pem', '-name', 'server',
      '-passout', `file:${path.basename(files.keystorePasswordFile)}`, '-out', 'server.p12'],
    dir,
  );
  for (const leftover of ['ca.key', 'server.key', 'server.csr', 'server.ext']) fs.rmSync(path.join(dir, leftover), { force: true });
}
