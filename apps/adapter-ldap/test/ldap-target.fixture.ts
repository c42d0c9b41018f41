import { randomBytes } from 'node:crypto';
import { Attribute, Change, Client, InvalidCredentialsError } from 'ldapts';
import { DEFAULT_HOSTILE_LABELS, type TargetFixture, type TargetSession } from '@portcullis/adapter-kit/conformance';
import type { TestEnvironment } from '@test/support/test-env';
import { TcpProxy } from '@test/support/tcp-proxy';
import { LOCKED_TIME_ATTRIBUTE, PERMANENT_LOCK_TIME } from '../src/account-lock';
import { LdapAccountEnforcer } from '../src/ldap-account.enforcer';
import { LdapSystemConfigSchema, type LdapSystemConfig } from '../src/ldap-system.config';
import { escapeDnValue, WHO_AM_I_OID } from './ldap-protocol';

const ignore = (): void => undefined;

/**
 * An OpenLDAP directory as the target of the enforcer conformance suite. Principals are `uid` values of
 * accounts in an organizational unit of their own (the system's baseDn), so a revoke sees nothing else;
 * a disabled principal is locked until an administrator unlocks. The enforcer binds as the root DN
 * through a TCP proxy, so an outage is simulated by closing the proxy while the shared server stays up.
 */
export class LdapTargetFixture implements TargetFixture<LdapSystemConfig> {
  readonly kind = 'ldap';
  readonly endsSessions = false;
  readonly hostileLabels = [...DEFAULT_HOSTILE_LABELS, '#lead', ' lead-space', 'x)(uid=*', '*'];
  private readonly unit: string;
  private readonly password = randomBytes(12).toString('hex');
  private readonly prefix = `cf-${randomBytes(3).toString('hex')}-`;
  private readonly admin: Client;
  /** DN of each principal (uid) the fixture created. */
  private readonly accounts = new Map<string, string>();
  private proxy?: TcpProxy;

  constructor(private readonly ldap: TestEnvironment['ldap']) {
    this.unit = `ou=${this.prefix}conformance,ou=people,${ldap.baseDn}`;
    this.admin = new Client({ url: ldap.url, timeout: 10_000 });
  }

  async setUp(): Promise<void> {
    await this.admin.bind(this.ldap.bindDn, this.ldap.bindPassword);
    await this.admin.add(this.unit, { objectClass: 'organizationalUnit', ou: `${this.prefix}conformance` });
    const { hostname, port } = new URL(this.ldap.url);
    this.proxy = await TcpProxy.start(hostname, Number(port));
  }

  enforcer(): LdapAccountEnforcer {
    return new LdapAccountEnforcer();
  }

  system(): LdapSystemConfig {
    return LdapSystemConfigSchema.parse({
      url: this.proxy!.url(this.ldap.url),
      bindDn: this.ldap.bindDn,
      bindPassword: this.ldap.bindPassword,
      baseDn: this.unit,
      connectTimeoutMs: 2_000,
      operationTimeoutMs: 5_000,
    });
  }

  async createPrincipal(label: string, { enabled = true }: { enabled?: boolean } = {}): Promise<string> {
    const uid = `${this.prefix}${label}`;
    const dn = `uid=${escapeDnValue(uid)},${this.unit}`;
    await this.admin.add(dn, {
      objectClass: 'inetOrgPerson',
      uid,
      cn: uid,
      sn: 'conformance',
      userPassword: this.password,
      ...(!enabled && { [LOCKED_TIME_ATTRIBUTE]: PERMANENT_LOCK_TIME }),
    });
    this.accounts.set(uid, dn);
    return uid;
  }

  async canAuthenticate(principal: string): Promise<boolean> {
    const client = new Client({ url: this.ldap.url, timeout: 5_000 });
    try {
      await client.bind(this.dnOf(principal), this.password);
      return true;
    } catch (error) {
      if (error instanceof InvalidCredentialsError) return false;
      throw error;
    } finally {
      await client.unbind().catch(ignore);
    }
  }

  async openSession(principal: string): Promise<TargetSession> {
    const client = new Client({ url: this.ldap.url, timeout: 5_000 });
    await client.bind(this.dnOf(principal), this.password);
    return {
      isOpen: () =>
        client.exop(WHO_AM_I_OID).then(
          (answer) => answer.value?.startsWith('dn:') ?? false,
          () => false,
        ),
      close: () => client.unbind(),
    };
  }

  async enableOutOfBand(principal: string): Promise<void> {
    await this.admin.modify(
      this.dnOf(principal),
      new Change({ operation: 'delete', modification: new Attribute({ type: LOCKED_TIME_ATTRIBUTE }) }),
    );
  }

  async takeDown(): Promise<void> {
    await this.proxy!.down();
  }

  async bringUp(): Promise<void> {
    await this.proxy!.up();
  }

  async cleanup(): Promise<void> {
    for (const dn of this.accounts.values()) await this.admin.del(dn);
    this.accounts.clear();
    await this.admin.del(this.unit);
    await this.proxy?.down();
    await this.admin.unbind();
  }

  private dnOf(principal: string): string {
    const dn = this.accounts.get(principal);
    if (dn === undefined) throw new Error(`no principal "${principal}" was created by this fixture`);
    return dn;
  }
}
