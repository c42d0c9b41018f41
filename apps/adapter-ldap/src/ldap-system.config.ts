import { FilterParser } from 'ldapts';
import { z } from 'zod';

/** An attribute type name (`uid`, `mail`, `sAMAccountName`) or its numeric OID. */
const ATTRIBUTE_TYPE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)$/;

function isFilter(value: string): boolean {
  try {
    FilterParser.parseString(value);
    return true;
  } catch {
    return false;
  }
}

/** How the adapter reaches one LDAP directory and which of its entries are accounts. */
export const LdapSystemConfigSchema = z.object({
  /** `ldap://host:port` or `ldaps://host:port` (TLS with the system's CAs; add a private CA with NODE_EXTRA_CA_CERTS). */
  url: z.string().regex(/^ldaps?:\/\/[^/?#\s]+\/?$/, { message: 'must be an ldap:// or ldaps:// URL of a host and port' }),
  /** DN the adapter binds as; it needs write access to `pwdAccountLockedTime` of the accounts (see the README). */
  bindDn: z.string().min(1),
  bindPassword: z.string().min(1),
  /** Accounts are searched for in the whole subtree below this DN. */
  baseDn: z.string().min(1),
  /** RFC 4515 filter an entry must match to be an account. Written by the operator, never built from names. */
  accountFilter: z
    .string()
    .refine(isFilter, { message: 'must be an RFC 4515 filter, e.g. (objectClass=inetOrgPerson)' })
    .default('(objectClass=inetOrgPerson)'),
  /** The attribute that holds a principal's name: an exempt principal matches its value (or the account's full DN). */
  principalAttribute: z.string().regex(ATTRIBUTE_TYPE, { message: 'must be an attribute type name or OID' }).default('uid'),
  connectTimeoutMs: z.number().int().positive().default(5_000),
  /** Per LDAP request; each page of a search is one request. */
  operationTimeoutMs: z.number().int().positive().default(15_000),
});

export type LdapSystemConfig = z.output<typeof LdapSystemConfigSchema>;
