import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { parsePublicKeyText, publicKeyFingerprint, publicKeyPem, verifyMessage, type SignatureCheck } from '@portcullis/contracts';
import type { KeyObject } from 'node:crypto';
import { DataSource } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { AdapterKeyEntity } from '../database/entities';
import { ConflictError, InvalidReferenceError, NotFoundError } from '../errors/domain.errors';

/** How long a key looked up for verification is reused before it is read again (other replicas may revoke). */
const CACHE_TTL_MS = 5_000;

export interface AdapterKeyView {
  adapterId: string;
  keyId: string;
  fingerprint: string;
  publicKey: string;
  registeredBy: string;
  registeredAt: string;
  revokedAt: string | null;
  revokedBy: string | null;
}

function keyView(key: AdapterKeyEntity): AdapterKeyView {
  return {
    adapterId: key.adapterId,
    keyId: key.keyId,
    fingerprint: key.fingerprint,
    publicKey: key.publicKey,
    registeredBy: key.registeredBy,
    registeredAt: key.registeredAt.toISOString(),
    revokedAt: key.revokedAt?.toISOString() ?? null,
    revokedBy: key.revokedBy,
  };
}

/**
 * The public keys adapters sign their reports with. An admin registers each adapter's key (the private
 * half never leaves the adapter); a report counts only when a registered, unrevoked key of the adapter
 * it names verifies its signature. Keys are revoked, never deleted.
 */
@Injectable()
export class AdapterKeysService {
  private readonly log = new Logger(AdapterKeysService.name);
  private readonly cache = new Map<string, { key: Promise<KeyObject | undefined>; until: number }>();

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
  ) {}

  async register(adapterId: string, keyId: string, pem: string, actor: string, sourceAddress?: string): Promise<AdapterKeyView> {
    let fingerprint: string;
    let normalized: string;
    try {
      // Text only: never a path (the configuration's parsePublicKey reads files), never a private key.
      const key = parsePublicKeyText(pem);
      fingerprint = publicKeyFingerprint(key);
      normalized = publicKeyPem(key);
    } catch (error) {
      throw new InvalidReferenceError(`publicKey is not an Ed25519 public key in SPKI PEM: ${(error as Error).message}`);
    }
    const view = await this.dataSource.transaction(async (manager) => {
      // ON CONFLICT: a concurrent registration of the same id waits for the other transaction, then finds its row,
      // so the same key registered twice at once is the idempotent repeat, not a unique-violation error.
      const inserted: unknown[] = await manager.query(
        `INSERT INTO adapter_keys (adapter_id, key_id, public_key, fingerprint, registered_by, registered_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (adapter_id, key_id) DO NOTHING RETURNING key_id`,
        [adapterId, keyId, normalized, fingerprint, actor, new Date()],
      );
      if (inserted.length === 0) {
        const existing = await manager.findOneByOrFail(AdapterKeyEntity, { adapterId, keyId });
        if (existing.fingerprint === fingerprint && !existing.revokedAt) return keyView(existing); // idempotent repeat
        throw new ConflictError(
          existing.revokedAt
            ? `key "${keyId}" of adapter "${adapterId}" was revoked; register the new key under a new key id`
            : `adapter "${adapterId}" already has a different key "${keyId}"; use a new key id to rotate`,
        );
      }
      const saved = await manager.findOneByOrFail(AdapterKeyEntity, { adapterId, keyId });
      await this.auditLog.append(manager, {
        actor,
        action: 'adapter-key.registered',
        sourceAddress,
        details: { adapterId, keyId, after: { fingerprint } },
      });
      return keyView(saved);
    });
    this.cache.delete(`${adapterId}/${keyId}`); // after commit: a lookup meanwhile cannot cache the old answer again
    return view;
  }

  async revoke(adapterId: string, keyId: string, reason: string, actor: string, sourceAddress?: string): Promise<AdapterKeyView> {
    const view = await this.dataSource.transaction(async (manager) => {
      const key = await manager.findOne(AdapterKeyEntity, { where: { adapterId, keyId }, lock: { mode: 'pessimistic_write' } });
      if (!key) throw new NotFoundError('adapter key', `${adapterId}/${keyId}`);
      if (key.revokedAt) return keyView(key);
      const revokedAt = new Date();
      await manager.update(AdapterKeyEntity, { adapterId, keyId }, { revokedAt, revokedBy: actor });
      await this.auditLog.append(manager, {
        actor,
        action: 'adapter-key.revoked',
        reason,
        sourceAddress,
        details: { adapterId, keyId, before: { fingerprint: key.fingerprint, revoked: false }, after: { revoked: true } },
      });
      return keyView({ ...key, revokedAt, revokedBy: actor });
    });
    // After commit. Other replicas stop trusting the key within CACHE_TTL_MS.
    this.cache.delete(`${adapterId}/${keyId}`);
    return view;
  }

  async list(adapterId?: string): Promise<AdapterKeyView[]> {
    const keys = await this.dataSource
      .getRepository(AdapterKeyEntity)
      .find({ where: adapterId ? { adapterId } : {}, order: { adapterId: 'ASC', registeredAt: 'ASC' } });
    return keys.map(keyView);
  }

  /**
   * Checks that `raw` (the report as it arrived) is signed by a registered, unrevoked key of `adapterId`.
   * A key of another adapter does not count: each adapter speaks only for itself.
   */
  async verify(adapterId: string, raw: unknown): Promise<SignatureCheck> {
    const keyIdOf = (raw as { keyId?: unknown } | null)?.keyId;
    const key = typeof keyIdOf === 'string' ? await this.activeKey(adapterId, keyIdOf) : undefined;
    return verifyMessage(raw, () => key);
  }

  /**
   * The key, cached for CACHE_TTL_MS. One lookup at a time per key: the reports of a batch are verified
   * together, and without it each of them would miss the cache at once, query the database and parse the
   * same PEM.
   */
  private activeKey(adapterId: string, keyId: string): Promise<KeyObject | undefined> {
    const cacheKey = `${adapterId}/${keyId}`;
    const cached = this.cache.get(cacheKey);
    if (cached && cached.until > Date.now()) return cached.key;
    const lookup = this.lookUpKey(adapterId, keyId);
    const entry = { key: lookup, until: Date.now() + CACHE_TTL_MS };
    this.cache.set(cacheKey, entry);
    lookup.catch(() => {
      if (this.cache.get(cacheKey) === entry) this.cache.delete(cacheKey); // a failed lookup is not remembered
    });
    return lookup;
  }

  private async lookUpKey(adapterId: string, keyId: string): Promise<KeyObject | undefined> {
    const row = await this.dataSource.getRepository(AdapterKeyEntity).findOneBy({ adapterId, keyId });
    if (!row || row.revokedAt) return undefined;
    try {
      return parsePublicKeyText(row.publicKey);
    } catch (error) {
      this.log.error(`stored key ${adapterId}/${keyId} is unreadable: ${(error as Error).message}`);
      return undefined;
    }
  }
}

/** Says in words why a report's signature was not accepted. */
export function describeSignatureFailure(check: SignatureCheck, adapterId: string): string | null {
  if (check.valid) return null;
  switch (check.reason) {
    case 'unsigned':
      return `not signed; reports from adapter "${adapterId}" must be signed with its registered key`;
    case 'unknown-key':
      return `signed with key "${check.keyId}", which is not a registered, unrevoked key of adapter "${adapterId}"`;
    case 'bad-signature':
      return `signature does not verify with key "${check.keyId}" of adapter "${adapterId}": forged or altered`;
  }
}
