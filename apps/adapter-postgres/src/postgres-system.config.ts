import { z } from 'zod';

/** How the adapter reaches one PostgreSQL server (one cluster: roles are per cluster). */
export const PostgresSystemConfigSchema = z.object({
  /**
   * Connection URL of the adapter's role on that server; it needs CREATEROLE (on PostgreSQL 16+ with
   * ADMIN OPTION on the roles it manages) and membership in pg_signal_backend. The password may be left
   * out of the URL and come from a pgpass file (`PGPASSFILE`).
   */
  url: z.string().regex(/^postgres(ql)?:\/\//, { message: 'must be a postgres:// or postgresql:// URL' }),
  /** Also take LOGIN from superusers (the adapter's role must then be a superuser itself). */
  revokeSuperusers: z.boolean().default(false),
  connectTimeoutMs: z.number().int().positive().default(5_000),
  /** Per statement; also bounds lock waits. At least 5 s, because ending a session waits up to 3 s. */
  statementTimeoutMs: z.number().int().min(5_000).default(15_000),
});

export type PostgresSystemConfig = z.output<typeof PostgresSystemConfigSchema>;
