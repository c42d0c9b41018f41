/** The demo systems and groups, registered through the API so they appear in the audit history. */
export const DEMO_SYSTEMS = [
  { id: 'stock-db', name: 'Stock database', kind: 'postgres', exemptPrincipals: ['breakglass_dba'] },
  { id: 'crm-db', name: 'Call-centre CRM database', kind: 'postgres', exemptPrincipals: ['breakglass_dba'] },
];

export const DEMO_GROUPS = [
  { id: 'back-office', name: 'Back office', systemIds: ['stock-db', 'crm-db'] },
  { id: 'stock', name: 'Stock', systemIds: ['stock-db'] },
  { id: 'call-centre', name: 'Call centre', systemIds: ['crm-db'] },
];

export async function seedDemoRegistry(apiUrl: string, adminToken: string): Promise<void> {
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
  for (const system of DEMO_SYSTEMS) await post('/systems', system);
  for (const group of DEMO_GROUPS) await post('/groups', group);
}
