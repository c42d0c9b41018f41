/**
 * The methods the application answers on a path, read from Express's own route table, so a request with
 * another method gets `405 Method Not Allowed` and an `Allow` header instead of a 404 that says the
 * resource is not there (RFC 9110, 15.5.6).
 *
 * Express (router 2) keeps one layer per route; `layer.match(path)` matches without storing request state.
 * Only the documented parts of the route table are used: `stack`, `route`, `route.methods`, `match`.
 */
export interface RouteTable {
  stack: readonly { route?: { methods: Record<string, boolean> }; match(path: string): unknown }[];
}

export function allowedMethods(table: RouteTable | undefined, path: string): string[] {
  const methods = new Set<string>();
  for (const layer of table?.stack ?? []) {
    if (!layer.route || !layer.match(path)) continue;
    for (const [method, handled] of Object.entries(layer.route.methods)) {
      if (!handled || method === '_all') continue;
      methods.add(method.toUpperCase());
      if (method === 'get') methods.add('HEAD'); // Express answers HEAD with the GET route
    }
  }
  return [...methods].sort();
}
