import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsISO8601, IsOptional, IsString, Length, Matches, MaxLength } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';

const PRINTABLE = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/;
const PRINCIPAL = /^[^\u0000-\u001f\u007f]+$/;

export class AddExemptionRequest {
  @ApiProperty({ example: 'breakglass_dba', description: 'the principal on the target (role, account, ACL user), verbatim' })
  @IsString()
  @Length(1, 256)
  @Matches(PRINCIPAL, { message: 'principal must not contain control characters' })
  principal!: string;

  @ApiProperty({ example: 'On-call DBA break-glass account for INC-2041' })
  @IsString()
  @Length(3, 2000)
  @Matches(PRINTABLE, { message: 'reason must not contain control characters' })
  reason!: string;

  @ApiPropertyOptional({ example: '2026-12-01T00:00:00Z', description: 'when the exemption ends; none: until removed' })
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'expiresAt must be an ISO 8601 date-time' })
  expiresAt?: string;

  @ApiPropertyOptional({ example: 'INC-2041' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  @Matches(/^[\x20-\x7e]+$/, { message: 'incidentRef must be printable ASCII' })
  incidentRef?: string;
}

export class RemoveExemptionRequest {
  @ApiProperty({ example: 'Account decommissioned' })
  @IsString()
  @Length(3, 2000)
  @Matches(PRINTABLE, { message: 'reason must not contain control characters' })
  reason!: string;

  @ApiPropertyOptional({ example: 'INC-2041' })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  @Matches(/^[\x20-\x7e]+$/, { message: 'incidentRef must be printable ASCII' })
  incidentRef?: string;
}

export class ExemptionParams {
  @Matches(SLUG_PATTERN, { message: 'id must be a lower-case slug (a-z, 0-9, "-"; 1-63 characters)' }) @MaxLength(63) id!: string;
  @IsString()
  @Length(1, 256)
  @Matches(PRINCIPAL, { message: 'principal must not contain control characters' })
  principal!: string;
}
