export const ROLES = ['security-lead', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, as established by authentication. */
export interface Principal {
  /** The subject: a person's or an automation's stable id. */
  sub: string;
  roles: Role[];
}

/** Everyone who may read the registry, decisions and history. */
export const READERS: Role[] = ['security-lead', 'auditor', 'admin'];
