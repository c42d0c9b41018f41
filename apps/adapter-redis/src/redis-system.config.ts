import { z } from 'zod';

/** How the adapter reaches one Redis server (ACL users are per server: each node is its own system). */
export const RedisSystemConfigSchema = z.object({
  /**
   * `redis://` or `rediss://` (TLS) URL with the adapter's own user and password, e.g.
   * `rediss://portcullis:<password>@cache.internal:6379`. That user needs exactly
   * `+acl|list +acl|getuser +acl|setuser +acl|save +acl|whoami +client|kill`.
   */
  url: z.string().regex(/^rediss?:\/\//, { message: 'must be a redis:// or rediss:// URL' }),
  /** Also switch off the `default` user (whoever connects without a user name). */
  includeDefaultUser: z.boolean().default(false),
  connectTimeoutMs: z.number().int().positive().default(5_000),
  /** Per command. */
  commandTimeoutMs: z.number().int().positive().default(10_000),
});

export type RedisSystemConfig = z.output<typeof RedisSystemConfigSchema>;
