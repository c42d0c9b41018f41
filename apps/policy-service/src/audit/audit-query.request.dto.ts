import { ApiPropertyOptional } from '@nestjs/swagger';
import { DecimalInteger } from '../common/decimal-integer';
import { IsInt, IsOptional, IsString, IsUUID, Matches, Max, MaxLength, Min } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { IsDateTime } from '../common/date-time';

export class AuditQueryRequest {
  @ApiPropertyOptional() @IsOptional() @Matches(SLUG_PATTERN, { message: 'groupId must be a slug' }) groupId?: string;
  @ApiPropertyOptional() @IsOptional() @Matches(SLUG_PATTERN, { message: 'systemId must be a slug' }) systemId?: string;
  @ApiPropertyOptional() @IsOptional() @IsUUID() commandId?: string;
  @ApiPropertyOptional({ description: 'e.g. user:alice or adapter:pg-main' }) @IsOptional() @IsString() @MaxLength(200) actor?: string;
  @ApiPropertyOptional({ description: 'e.g. group.revoked' }) @IsOptional() @IsString() @MaxLength(100) action?: string;
  @ApiPropertyOptional({ description: 'inclusive, ISO 8601' }) @IsOptional() @IsDateTime('from') from?: string;
  @ApiPropertyOptional({ description: 'exclusive, ISO 8601' }) @IsOptional() @IsDateTime('to') to?: string;
  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @Matches(/^[0-9]{1,18}$/, { message: 'cursor must be the nextCursor of a previous page' })
  cursor?: string;
  @ApiPropertyOptional({ default: 100, minimum: 1, maximum: 500 })
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;
}
