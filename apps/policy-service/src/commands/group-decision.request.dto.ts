import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';

const PRINTABLE = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/;

export class RevokeGroupRequest {
  @ApiProperty({ example: 'Attackers hold back-office credentials; contain while we rotate them' })
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

export class RestoreGroupRequest {
  @ApiProperty({ example: 'Credentials rotated, attacker access closed (INC-2041)' })
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

export class ApproveRestoreRequest {
  @ApiPropertyOptional({ example: 'Checked with the incident commander: rotation confirmed' })
  @IsOptional()
  @IsString()
  @Length(1, 2000)
  @Matches(PRINTABLE, { message: 'comment must not contain control characters' })
  comment?: string;
}

export class RejectRestoreRequest {
  @ApiProperty({ example: 'Attacker still active on the VPN; keep it revoked' })
  @IsString()
  @Length(3, 2000)
  @Matches(PRINTABLE, { message: 'reason must not contain control characters' })
  reason!: string;
}
