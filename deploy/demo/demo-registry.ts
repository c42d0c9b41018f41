/** The demo systems and groups, registered through the API so they appear in the audit history. */
export interface DemoTargets {
  /** Whether an LDAP directory and a Redis server could be started on this machine. */
  ldap: boolean;
  redis: boolean;
}

export function demoSystems(targets: DemoTargets) {
  return [
    { id: 'stock-db', name: 'Stock database', kind: 'postgres', adapterId: 'pg-demo', exemptPrincipals: ['breakglass_dba'] },
    { id: 'crm-db', name: 'Call-centre CRM database', kind: 'postgres', adapterId: 'pg-demo', exemptPrincipals: ['breakglass_dba'] },
    ...(targets.ldap
      ? [{ id: 'staff-directory', name: 'Staff directory (LDAP)', kind: 'ldap', adapterId: 'ldap-demo', exemptPrincipals: ['breakglass'] }]
      : []),
    ...(targets.redis
      ? [{ id: 'session-cache', name: 'Session cache (Redis)', kind: 'redis', adapterId: 'redis-demo', exemptPrincipals: ['breakglass'] }]
      : []),
  ];
}

export function demoGroups(targets: DemoTargets) {
  return [
    { id: 'back-office', name: 'Back office', systemIds: ['stock-db', 'crm-db', ...(targets.ldap ? ['staff-directory'] : [])] },
    { id: 'stock', name: 'Stock', systemIds: ['stock-db'] },
    { id: 'call-centre', name: 'Call centre', systemIds: ['crm-db', ...(targets.redis ? ['session-cache'] : [])] },
  ];
}

/** An adapter's public key, registered so that its signed acknowledgements count. */
export interface DemoAdapterKey {
  adapterId: string;
  keyId: string;
  publicKeyPem: string;
}

export async function seedDemoRegistry(
  apiUrl: string,
  adminToken: string,
  targets: DemoTargets,
  adapterKeys: readonly DemoAdapterKey[] = [],
): Promise<void> {
  for (const key of adapterKeys) {
    const response = await fetch(`${apiUrl}/adapters/${key.adapterId}/keys/${key.keyId}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ publicKey: key.publicKeyPem }),
    });
    if (!response.ok) throw new Error(`PUT adapter key ${key.adapterId}/${key.keyId} answered ${response.status}: ${await response.text()}`);
  }
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${apiUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // 409: already registered by an earlier run against the same database.
    if (!response.ok && response.status !== 409) {
      throw new Error(`POST ${path} answered ${response.status}: ${await response.text()}`);
    }
  };
  for (const system of demoSystems(targets)) await post('/systems', system);
  for (const group of demoGroups(targets)) await post('/groups', group);
}
