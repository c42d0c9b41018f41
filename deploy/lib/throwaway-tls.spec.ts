import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { throwawayServerTls } from './throwaway-tls';

describe('throwawayServerTls', () => {
  let base: string;
  beforeEach(() => (base = mkdtempSync(join(tmpdir(), 'throwaway-tls-spec-'))));
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it('makes a CA and a server certificate for 127.0.0.1 signed by it, and keeps no private key but the keystore', () => {
    const tls = throwawayServerTls(join(base, 'tls'));
    const ca = new X509Certificate(readFileSync(tls.caFile));
    const server = new X509Certificate(readFileSync(tls.certificateFile));
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(readdirSync(join(base, 'tls')).sort()).toEqual(['ca.pem', 'server.p12', 'server.p12.password', 'server.pem']);
    expect(statSync(tls.keystorePasswordFile).mode & 0o077).toBe(0);
    expect(statSync(join(base, 'tls')).mode & 0o077).toBe(0);
    expect(readdirSync(base)).toEqual(['tls']); // no staging directory left behind
  });

  it('reuses a finished set, and makes a new one where a set is incomplete', () => {
    const first = throwawayServerTls(join(base, 'tls'));
    const ca = readFileSync(first.caFile, 'utf8');
    expect(readFileSync(throwawayServerTls(join(base, 'tls')).caFile, 'utf8')).toBe(ca);
    rmSync(first.keystoreFile);
    const again = throwawayServerTls(join(base, 'tls'));
    expect(readFileSync(again.caFile, 'utf8')).not.toBe(ca);
    expect(readdirSync(join(base, 'tls')).sort()).toEqual(['ca.pem', 'server.p12', 'server.p12.password', 'server.pem']);
  });
});
