/**
 * The methods the application answers on a path, read from Express's route table, so that a request with
 * another method gets `405 Method Not Allowed` and an `Allow` header instead of a 404 saying the resource
 * is not there (RFC 9110, 15.5.6).
 *
 * Express 5 (its `router` package) keeps one layer per route; `layer.match(path)` is the matcher Express
 * routes with, so the answer agrees with its routing. These are internals of `router` 2.x, not documented
 * API: if they change shape, nothing matches and the answer stays the 404 it was.
 */
export interface RouteTable {
  stack: readonly { route?: { methods: Record<string, boolean> }; match(path: string): unknown }[];
}

/**
 * `undefined` when no route matches the path, or when one matches every method (`@All()`: then whatever
 * said 404 is right); otherwise the methods, HEAD with GET as Express answers it, sorted.
 */
export function allowedMethods(table: RouteTable | undefined, path: string): string[] | undefined {
  const methods = new Set<string>();
  for (const layer of table?.stack ?? []) {
    let matches: unknown;
    try {
      matches = layer.route && layer.match(path);
    } catch {
      matches = false; // a path its matcher cannot decode: Express would not have routed it either
    }
    if (!matches) continue;
    for (const [method, handled] of Object.entries(layer.route!.methods)) {
      if (!handled) continue;
      if (method === '_all') return undefined;
      methods.add(method.toUpperCase());
      if (method === 'get') methods.add('HEAD');
    }
  }
  return methods.size > 0 ? [...methods].sort() : undefined;
}
