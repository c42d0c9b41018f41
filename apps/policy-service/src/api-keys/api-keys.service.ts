import { BadRequestException, ForbiddenException, Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, IsNull } from 'typeorm';
import { AuditLog } from '../audit/audit-log.service';
import { AuthenticationFailure } from '../auth/credentials';
import type { Principal } from '../auth/roles';
import { roles as knownRoles } from '../auth/token-verifier';
import { POLICY_SERVICE_CONFIG, type PolicyServiceConfig } from '../config/policy-service.config';
import { ApiKeyEntity } from '../database/entities';
import { AlreadyExistsError, NotFoundError } from '../errors/domain.errors';
import { apiKeyMatches, generateApiKey, parseApiKeyId } from './api-key.secret';
import type { CreateApiKeyRequest, RevokeApiKeyRequest } from './api-key.request.dto';

export interface ApiKeyView {
  id: string;
  name: string;
  roles: string[];
  status: 'active' | 'expired' | 'revoked';
  /** How the key starts, to recognise it; the rest is never shown again. */
  hint: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
  lastUsedAt: string | null;
  lastUsedFrom: string | null;
}

function keyView(key: ApiKeyEntity, now = new Date()): ApiKeyView {
  return {
    id: key.id,
    name: key.name,
    roles: key.roles,
    status: key.revokedAt ? 'revoked' : key.expiresAt && key.expiresAt <= now ? 'expired' : 'active',
    hint: `pcl_${key.id}_…`,
    createdBy: key.createdBy,
    createdAt: key.createdAt.toISOString(),
    expiresAt: key.expiresAt?.toISOString() ?? null,
    revokedAt: key.revokedAt?.toISOString() ?? null,
    revokedBy: key.revokedBy,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
    lastUsedFrom: key.lastUsedFrom,
  };
}

/** What the audit history keeps of a key: never its secret or hash. */
function auditedState(key: ApiKeyView) {
  return { name: key.name, roles: key.roles, status: key.status, expiresAt: key.expiresAt, revokedAt: key.revokedAt };
}

/**
 * API keys for automation. An admin creates one with a name and roles; the key is returned once and only
 * its SHA-256 is stored. Every use checks the key against the database (a revocation takes effect at
 * once, on every replica), in constant time; `last_used_at` is written at most once per interval.
 */
@Injectable()
export class ApiKeysService {
  private readonly log = new Logger(ApiKeysService.name);

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly auditLog: AuditLog,
    @Inject(POLICY_SERVICE_CONFIG) private readonly config: PolicyServiceConfig,
  ) {}

  async create(request: CreateApiKeyRequest, principal: Principal, sourceAddress: string): Promise<ApiKeyView & { key: string }> {
    this.refuseApiKeyCaller(principal);
    // Absent or null: until revoked.
    const expiresAt = request.expiresAt == null ? null : new Date(request.expiresAt);
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      throw new BadRequestException('expiresAt must be in the future');
    }
    const generated = generateApiKey();
    const actor = `user:${principal.sub}`;
    const view = await this.dataSource.transaction(async (manager) => {
      const clash = await manager.findOneBy(ApiKeyEntity, { name: request.name, revokedAt: IsNull() });
      if (clash) throw new AlreadyExistsError('API key named', request.name);
      await manager
        .insert(ApiKeyEntity, {
          id: generated.id,
          name: request.name,
          roles: request.roles,
          secretHash: generated.hash,
          createdBy: actor,
          createdAt: new Date(),
          expiresAt,
        })
        .catch((error: unknown) => {
          // The same name created concurrently: the check above ran before the other transaction committed.
          if ((error as { code?: string }).code === '23505') throw new AlreadyExistsError('API key named', request.name);
          throw error;
        });
      const created = keyView(await manager.findOneByOrFail(ApiKeyEntity, { id: generated.id }));
      // Last statement of the transaction (the audit append locks the hash chain).
      await this.auditLog.append(manager, {
        actor,
        action: 'api-key.created',
        sourceAddress,
        details: { apiKeyId: created.id, before: null, after: auditedState(created) },
      });
      return created;
    });
    return { ...view, key: generated.key };
  }

  async list(): Promise<{ items: ApiKeyView[] }> {
    const keys = await this.dataSource.getRepository(ApiKeyEntity).find({ order: { createdAt: 'DESC', id: 'ASC' } });
    const now = new Date();
    return { items: keys.map((key) => keyView(key, now)) };
  }

  async get(id: string): Promise<ApiKeyView> {
    const key = await this.dataSource.getRepository(ApiKeyEntity).findOneBy({ id });
    if (!key) throw new NotFoundError('API key', id);
    return keyView(key);
  }

  /** Revokes a key at once; revoking a revoked key changes nothing and returns it as it is. */
  async revoke(id: string, request: RevokeApiKeyRequest, principal: Principal, sourceAddress: string): Promise<ApiKeyView> {
    this.refuseApiKeyCaller(principal);
    const actor = `user:${principal.sub}`;
    return this.dataSource.transaction(async (manager) => {
      const key = await manager.findOne(ApiKeyEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!key) throw new NotFoundError('API key', id);
      if (key.revokedAt) return keyView(key);
      const before = keyView(key);
      await manager.update(ApiKeyEntity, { id }, { revokedAt: new Date(), revokedBy: actor });
      const after = keyView(await manager.findOneByOrFail(ApiKeyEntity, { id }));
      await this.auditLog.append(manager, {
        actor,
        action: 'api-key.revoked',
        reason: request.reason ?? null,
        sourceAddress,
        details: { apiKeyId: id, before: auditedState(before), after: auditedState(after) },
      });
      return after;
    });
  }

  /**
   * The principal of a presented key, or an AuthenticationFailure. The secret is compared before revocation
   * or expiry is looked at, so knowing a key's id (which is not secret) tells nothing about it.
   */
  async authenticate(presented: string, sourceAddress: string): Promise<Principal> {
    const id = parseApiKeyId(presented);
    if (!id) throw new AuthenticationFailure('malformed API key', { credential: 'api-key' });
    const fail = (reason: string, publicMessage?: string): never => {
      throw new AuthenticationFailure(reason, { credential: 'api-key', unverifiedApiKeyId: id, publicMessage });
    };
    const key = await this.dataSource.getRepository(ApiKeyEntity).findOneBy({ id });
    if (!key) return fail('unknown API key');
    if (!apiKeyMatches(presented, key.secretHash)) return fail('API key secret does not match');
    if (key.revokedAt) return fail('API key revoked');
    if (key.expiresAt && key.expiresAt.getTime() <= Date.now()) return fail('API key expired', 'API key expired');
    await this.recordUse(key, sourceAddress);
    return { sub: `apikey:${key.id}`, roles: knownRoles(key.roles), via: 'api-key', apiKeyName: key.name };
  }

  /** Writes `last_used_at` at most once per interval per key, across replicas (the condition is in the UPDATE). */
  private async recordUse(key: ApiKeyEntity, sourceAddress: string): Promise<void> {
    const intervalSeconds = this.config.identity.apiKeyLastUsedIntervalSeconds;
    if (key.lastUsedAt && Date.now() - key.lastUsedAt.getTime() < intervalSeconds * 1000) return;
    try {
      await this.dataSource.query(
        `UPDATE api_keys SET last_used_at = now(), last_used_from = $2
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= now() - make_interval(secs => $3))`,
        [key.id, sourceAddress.slice(0, 100), intervalSeconds],
      );
    } catch (error) {
      // Bookkeeping only: a failed write must not refuse a valid key.
      this.log.warn(`could not record the use of API key ${key.id}: ${(error as Error).message}`);
    }
  }

  private refuseApiKeyCaller(principal: Principal): void {
    // An automation's key must not be able to mint more keys (or revoke others'): keys are managed by people.
    if (principal.via === 'api-key') throw new ForbiddenException('API keys cannot create or revoke API keys; use a personal token');
  }
}
