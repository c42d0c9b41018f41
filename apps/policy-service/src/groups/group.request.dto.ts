import { ApiProperty } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsIn, IsString, Length, Matches } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { IncidentRefField, NameField, ReasonField } from '../common/decision-fields';

const SLUG_MESSAGE = 'must be a lower-case slug (a-z, 0-9, "-"; 1-63 characters)';

export class UpdateGroupRequest {
  @NameField('Back office') name!: string;
  @ApiProperty({ example: ['stock-db', 'ledger-db'], description: 'the whole membership (replaces the previous one)' })
  @IsArray()
  @ArrayMaxSize(10000)
  @ArrayUnique()
  @Matches(SLUG_PATTERN, { each: true, message: `each of systemIds ${SLUG_MESSAGE}` })
  systemIds!: string[];
}

export class CreateGroupRequest extends UpdateGroupRequest {
  @ApiProperty({ example: 'back-office' }) @Matches(SLUG_PATTERN, { message: `id ${SLUG_MESSAGE}` }) id!: string;
}

export class GroupIdParam {
  @Matches(SLUG_PATTERN, { message: `id ${SLUG_MESSAGE}` }) id!: string;
}

export const RESTORE_APPROVAL_MODES = ['four-eyes', 'single-admin'] as const;

export class RestoreApprovalRequest {
  @ApiProperty({
    enum: RESTORE_APPROVAL_MODES,
    description: '`four-eyes`: a second security lead approves every restore; `single-admin`: an admin may restore alone',
  })
  @IsIn(RESTORE_APPROVAL_MODES, { message: `restoreApproval must be one of: ${RESTORE_APPROVAL_MODES.join(', ')}` })
  restoreApproval!: (typeof RESTORE_APPROVAL_MODES)[number];

  @ReasonField('Stock systems are restored by the on-call admin out of hours')
  reason!: string;

  @IncidentRefField()
  incidentRef?: string;
}
