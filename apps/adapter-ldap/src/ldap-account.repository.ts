import {
  AndFilter,
  Attribute,
  Change,
  Client,
  EqualityFilter,
  FilterParser,
  InvalidDNSyntaxError,
  NoSuchObjectError,
  OrFilter,
  type Entry,
  type Filter,
} from 'ldapts';
import { LOCKED_TIME_ATTRIBUTE, type DirectoryAccount } from './account-lock';
import type { LdapSystemConfig } from './ldap-system.config';

/** The accounts of one directory and their password-policy locks, as the enforcer needs them. */
export interface AccountRepository {
  /** Every entry below baseDn that matches the account filter, with its name and lock. */
  listAccounts(): Promise<DirectoryAccount[]>;
  /** DNs of those accounts whose principal attribute equals one of `principals` (by the server's matching rule). */
  findAccountsByPrincipal(principals: readonly string[]): Promise<string[]>;
  /** The entry `dn` names, with the server's spelling of its DN and its lock; undefined when it names none or is no DN. */
  findEntry(dn: string): Promise<DirectoryAccount | undefined>;
  /**
   * Replaces the lock `from` of an entry with `to` (undefined: none) in one atomic modify that fails
   * when the lock is no longer `from`. Resolves false when the entry no longer exists.
   */
  changeLock(dn: string, from: string | undefined, to: string | undefined): Promise<boolean>;
  close(): Promise<void>;
}

export type AccountRepositoryFactory = (system: LdapSystemConfig) => Promise<AccountRepository>;

const PAGE_SIZE = 500;
/** Asks for no attributes (RFC 4511 4.5.1.8). */
const NO_ATTRIBUTES = '1.1';

function firstValue(entry: Entry, attribute: string): string | undefined {
  const key = Object.keys(entry).find((name) => name.toLowerCase() === attribute.toLowerCase());
  return key === undefined ? undefined : [entry[key]].flat()[0]?.toString();
}

function toAccount(entry: Entry, principalAttribute?: string): DirectoryAccount {
  const name = principalAttribute === undefined ? undefined : firstValue(entry, principalAttribute);
  const lockedTime = firstValue(entry, LOCKED_TIME_ATTRIBUTE);
  return { dn: entry.dn, ...(name !== undefined && { name }), ...(lockedTime !== undefined && { lockedTime }) };
}

function lockValue(operation: 'add' | 'delete', value: string): Change {
  return new Change({ operation, modification: new Attribute({ type: LOCKED_TIME_ATTRIBUTE, values: [value] }) });
}

/**
 * An `AccountRepository` over one bound connection. Names only reach the server inside filter objects
 * (encoded as BER values, never as filter text) and DNs are the server's own strings, passed back verbatim.
 */
export class LdapAccountRepository implements AccountRepository {
  private readonly accountFilter: Filter;

  private constructor(
    private readonly client: Client,
    private readonly system: LdapSystemConfig,
  ) {
    this.accountFilter = FilterParser.parseString(system.accountFilter);
  }

  static async connect(system: LdapSystemConfig): Promise<LdapAccountRepository> {
    const client = new Client({ url: system.url, connectTimeout: system.connectTimeoutMs, timeout: system.operationTimeoutMs });
    try {
      await client.bind(system.bindDn, system.bindPassword);
    } catch (error) {
      await client.unbind().catch(() => undefined);
      throw error;
    }
    return new LdapAccountRepository(client, system);
  }

  async listAccounts(): Promise<DirectoryAccount[]> {
    const { principalAttribute } = this.system;
    const entries = await this.searchAccounts(this.accountFilter, [principalAttribute, LOCKED_TIME_ATTRIBUTE]);
    return entries.map((entry) => toAccount(entry, principalAttribute));
  }

  async findAccountsByPrincipal(principals: readonly string[]): Promise<string[]> {
    if (principals.length === 0) return [];
    const named = new OrFilter({
      filters: principals.map((value) => new EqualityFilter({ attribute: this.system.principalAttribute, value })),
    });
    const entries = await this.searchAccounts(new AndFilter({ filters: [this.accountFilter, named] }), [NO_ATTRIBUTES]);
    return entries.map((entry) => entry.dn);
  }

  async findEntry(dn: string): Promise<DirectoryAccount | undefined> {
    try {
      const { searchEntries } = await this.client.search(dn, { scope: 'base', attributes: [LOCKED_TIME_ATTRIBUTE] });
      return searchEntries.map((entry) => toAccount(entry))[0];
    } catch (error) {
      if (error instanceof NoSuchObjectError || error instanceof InvalidDNSyntaxError) return undefined;
      throw error;
    }
  }

  async changeLock(dn: string, from: string | undefined, to: string | undefined): Promise<boolean> {
    const changes = [
      ...(from === undefined ? [] : [lockValue('delete', from)]),
      ...(to === undefined ? [] : [lockValue('add', to)]),
    ];
    try {
      await this.client.modify(dn, changes);
      return true;
    } catch (error) {
      if (error instanceof NoSuchObjectError) return false;
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.client.unbind().catch(() => undefined);
  }

  private async searchAccounts(filter: Filter, attributes: string[]): Promise<Entry[]> {
    const { searchEntries } = await this.client.search(this.system.baseDn, {
      scope: 'sub',
      filter,
      attributes,
      paged: { pageSize: PAGE_SIZE },
    });
    return searchEntries;
  }
}
