import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { ApiKeysService } from '../api-keys/api-keys.service';
import { RequestCredentialStrategy } from './credential.strategy';
import { readCredential, sourceAddress } from './credentials';
import type { Principal } from './roles';

/** API keys (`pcl_<id>_<secret>`), sent as `Authorization: Bearer pcl_...` or `X-API-Key: pcl_...`. */
@Injectable()
export class ApiKeyStrategy extends PassportStrategy(RequestCredentialStrategy, 'api-key') {
  constructor(private readonly apiKeys: ApiKeysService) {
    super();
  }

  async validate(request: Request): Promise<Principal | null> {
    const credential = readCredential(request);
    return credential.kind === 'api-key' ? this.apiKeys.authenticate(credential.value, sourceAddress(request)) : null;
  }
}
