import { ApiProperty } from '@nestjs/swagger';
import { IsString, Length, Matches } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { ReasonField } from '../common/decision-fields';

export class AdapterKeyParams {
  @Matches(SLUG_PATTERN, { message: 'adapterId must be a lower-case slug' }) adapterId!: string;
  @Matches(/^[A-Za-z0-9._-]{1,100}$/, { message: 'keyId must be 1-100 characters of A-Z a-z 0-9 . _ -' }) keyId!: string;
}

export class AdapterIdParam {
  @Matches(SLUG_PATTERN, { message: 'adapterId must be a lower-case slug' }) adapterId!: string;
}

export class RegisterAdapterKeyRequest {
  @ApiProperty({ description: "the adapter's Ed25519 public key, SPKI PEM" })
  @IsString()
  @Length(40, 2000)
  publicKey!: string;
}

export class RevokeAdapterKeyRequest {
  @ReasonField('adapter host rebuilt after compromise')
  reason!: string;
}

