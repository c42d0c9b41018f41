import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';
import { ROLES, type Role } from '../auth/roles';
import { IsDateTime } from '../common/date-time';
import { NOT_BLANK, PRINTABLE } from '../common/decision-fields';

export class CreateApiKeyRequest {
  @ApiProperty({ example: 'soar-containment-playbook', description: 'unique among keys in use; 1-100 of A-Z a-z 0-9 space . _ : -' })
  @IsString()
  @Matches(/^[A-Za-z0-9._:-](?:[A-Za-z0-9 ._:-]{0,98}[A-Za-z0-9._:-])?$/, {
    message: 'name must be 1-100 characters of A-Z a-z 0-9 space . _ : - (no leading or trailing space)',
  })
  name!: string;

  @ApiProperty({ example: ['security-lead'], enum: ROLES, isArray: true, description: 'what the key may do' })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(ROLES.length)
  @ArrayUnique()
  @IsIn(ROLES, { each: true, message: `roles must be some of ${ROLES.join(', ')}` })
  roles!: Role[];

  @ApiPropertyOptional({ example: '2027-01-31T00:00:00Z', description: 'after this the key is refused; none: until revoked' })
  @IsOptional()
  @IsDateTime('expiresAt')
  expiresAt?: string | null;
}

export class ApiKeyIdParam {
  @Matches(/^[0-9a-f]{16}$/, { message: 'id must be 16 lower-case hex characters (the <id> of pcl_<id>_...)' }) id!: string;
}

export class RevokeApiKeyRequest {
  @ApiPropertyOptional({ example: 'playbook retired' })
  @IsOptional()
  @IsString()
  @Length(1, 2000)
  @Matches(PRINTABLE, { message: 'reason must not contain control characters' })
  @Matches(NOT_BLANK, { message: 'reason must not be blank' })
  reason?: string;
}
