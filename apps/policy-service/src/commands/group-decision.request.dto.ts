import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { ArrayMaxSize, ArrayNotEmpty, ArrayUnique, IsArray, IsOptional, IsString, Length, Matches } from 'class-validator';
import { IncidentRefField, PRINTABLE, ReasonField } from '../common/decision-fields';

export class RevokeGroupRequest {
  @ReasonField('Attackers hold back-office credentials; contain while we rotate them')
  reason!: string;

  @IncidentRefField()
  incidentRef?: string;
}

export class RevokeGroupsRequest {
  @ApiProperty({ example: ['back-office', 'call-centre', 'stock'], description: 'the groups to revoke, 1-10000' })
  @IsArray()
  @ArrayNotEmpty()
  @ArrayMaxSize(10_000)
  @ArrayUnique()
  @Matches(SLUG_PATTERN, { each: true, message: 'groupIds must be lower-case slugs' })
  groupIds!: string[];

  @ReasonField('Attackers inside the network: contain everything in scope')
  reason!: string;

  @IncidentRefField()
  incidentRef?: string;
}

export class RestoreGroupRequest {
  @ReasonField('Credentials rotated, attacker access closed (INC-2041)')
  reason!: string;

  @IncidentRefField()
  incidentRef?: string;
}

export class ApproveRestoreRequest {
  @ApiPropertyOptional({ example: 'Checked with the incident commander: rotation confirmed' })
  @IsOptional()
  @IsString()
  @Length(1, 2000)
  @Matches(PRINTABLE, { message: 'comment must not contain control characters' })
  comment?: string;
}

export class RejectRestoreRequest {
  @ReasonField('Attacker still active on the VPN; keep it revoked')
  reason!: string;
}
