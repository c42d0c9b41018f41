export const ROLES = ['security-lead', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, as established by authentication. */
export interface Principal {
  /** The subject: a person's or an automation's stable id. */
  sub: string;
  roles: Role[];
  /**
   * How the caller proved it: a local HS256 token (`npm run token`), a token of the identity provider
   * (single sign-on) or an API key (then `sub` is `apikey:<id>` and `apiKeyName` its name).
   */
  via?: 'local-token' | 'sso-token' | 'api-key';
  apiKeyName?: string;
}

/** Everyone who may read the registry, decisions and history. */
export const READERS: Role[] = ['security-lead', 'auditor', 'admin'];
