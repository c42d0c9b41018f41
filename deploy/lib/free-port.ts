import * as net from 'node:net';

/** Ports handed out by this process recently, so two quick calls never return the same port. */
const handedOut = new Set<number>();

function probe(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the bound port'))));
    });
  });
}

/**
 * A TCP port on 127.0.0.1 that is free right now (the OS picks it from the ephemeral range).
 * Another process may still take it before the caller binds it; callers that spawn servers should
 * be ready to retry. Never returns the same port twice within one process.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await probe('127.0.0.1');
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no new free port found after 50 attempts');
}
