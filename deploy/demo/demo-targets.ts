import { Client as LdapClient } from 'ldapts';
import { createClient } from 'redis';

/** Demo accounts in the LDAP directory: `breakglass` is exempt, `contractor` was locked long ago. */
export async function seedDemoDirectory(target: { url: string; baseDn: string; bindDn: string; bindPassword: string }): Promise<void> {
  const client = new LdapClient({ url: target.url });
  await client.bind(target.bindDn, target.bindPassword);
  try {
    for (const [uid, locked] of [['anna', false], ['ben', false], ['breakglass', false], ['contractor', true]] as const) {
      await client.add(`uid=${uid},ou=people,${target.baseDn}`, {
        objectClass: ['inetOrgPerson'],
        uid,
        cn: uid,
        sn: uid,
        userPassword: uid,
        ...(locked ? { pwdAccountLockedTime: '000001010000Z' } : {}),
      });
    }
  } finally {
    await client.unbind();
  }
}

/** Demo ACL users on the Redis server: `breakglass` is exempt, `old_contractor` was switched off. */
export async function seedDemoCache(url: string): Promise<void> {
  const client = createClient({ url });
  await client.connect();
  try {
    for (const [user, on] of [['cashier_app', true], ['agent_anna', true], ['breakglass', true], ['old_contractor', false]] as const) {
      await client.sendCommand(['ACL', 'SETUSER', user, on ? 'on' : 'off', `>${user}`, '~*', '+@all']);
    }
    await client.sendCommand(['ACL', 'SAVE']);
  } finally {
    await client.quit();
  }
}
