import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { RequestCredentialStrategy } from './credential.strategy';
import { readCredential } from './credentials';
import type { Principal } from './roles';
import { TokenVerifier } from './token-verifier';

/**
 * Bearer JWTs: local HS256 tokens (`npm run token`, JWT_SECRET) and identity provider tokens (JWKS,
 * RS256/ES256). Which key verifies a token is decided in TokenVerifier (by `kid`, see there).
 */
@Injectable()
export class JwtStrategy extends PassportStrategy(RequestCredentialStrategy, 'jwt') {
  constructor(private readonly tokens: TokenVerifier) {
    super();
  }

  async validate(request: Request): Promise<Principal | null> {
    const credential = readCredential(request);
    return credential.kind === 'jwt' ? this.tokens.verify(credential.value) : null;
  }
}
