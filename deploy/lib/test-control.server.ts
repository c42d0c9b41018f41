import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ControlActions = Record<string, () => Promise<void>>;

/**
 * Lets integration specs, which run in Jest's worker, act on servers owned by the test runner: stop,
 * start or kill the broker and the like (`POST /kafka/stop`). Bound to 127.0.0.1 on a free port.
 */
export async function startTestControlServer(actions: ControlActions): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    const action = request.method === 'POST' ? actions[(request.url ?? '').replace(/^\//, '')] : undefined;
    if (!action) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`unknown action; known: ${Object.keys(actions).join(', ')}`);
      return;
    }
    action().then(
      () => response.writeHead(204).end(),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(String(error)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
