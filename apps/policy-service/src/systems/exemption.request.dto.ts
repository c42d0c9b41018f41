import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches, MaxLength } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { IsDateTime } from '../common/date-time';
import { IncidentRefField, ReasonField } from '../common/decision-fields';

const PRINCIPAL = /^[^\u0000-\u001f\u007f]+$/;

export class AddExemptionRequest {
  @ApiProperty({ example: 'breakglass_dba', description: 'the principal on the target (role, account, ACL user), verbatim' })
  @IsString()
  @Length(1, 256)
  @Matches(PRINCIPAL, { message: 'principal must not contain control characters' })
  principal!: string;

  @ReasonField('On-call DBA break-glass account for INC-2041')
  reason!: string;

  @ApiPropertyOptional({ example: '2026-12-01T00:00:00Z', description: 'when the exemption ends; none: until removed' })
  @IsOptional()
  @IsDateTime('expiresAt')
  expiresAt?: string | null;

  @IncidentRefField()
  incidentRef?: string;
}

export class RemoveExemptionRequest {
  @ReasonField('Account decommissioned')
  reason!: string;

  @IncidentRefField()
  incidentRef?: string;
}

export class ExemptionParams {
  @Matches(SLUG_PATTERN, { message: 'id must be a lower-case slug (a-z, 0-9, "-"; 1-63 characters)' }) @MaxLength(63) id!: string;
  @IsString()
  @Length(1, 256)
  @Matches(PRINCIPAL, { message: 'principal must not contain control characters' })
  principal!: string;
}
