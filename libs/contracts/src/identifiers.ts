import { z } from 'zod';

/** Ids of systems, groups and adapters: lower-case slugs, 1-63 characters, no leading or trailing dash. */
export const SLUG_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export const SlugSchema = z.string().regex(SLUG_PATTERN, {
  message: 'must be a lower-case slug: a-z, 0-9 and "-", 1-63 characters, not starting or ending with "-"',
});

/**
 * A principal on a target system (a PostgreSQL role, an LDAP account, a Redis ACL user). Names are
 * passed to adapters verbatim; adapters must quote them for their target and never interpolate them.
 */
export const PrincipalNameSchema = z
  .string()
  .min(1)
  .max(256)
  .refine((value) => !/[\u0000-\u001f\u007f]/.test(value), { message: 'must not contain control characters' });

export const AccessStateSchema = z.enum(['active', 'revoked']);
export type AccessState = z.infer<typeof AccessStateSchema>;
