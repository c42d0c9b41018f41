import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsUUID, Matches, Max, Min } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';

export class CommandQueryRequest {
  @ApiPropertyOptional() @IsOptional() @Matches(SLUG_PATTERN, { message: 'groupId must be a slug' }) groupId?: string;
  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @Matches(/^\d{4}-\d{2}-\d{2}T[0-9:.]+Z_[0-9a-f-]{36}$/, { message: 'cursor must be the nextCursor of a previous page' })
  cursor?: string;
  @ApiPropertyOptional({ default: 50, minimum: 1, maximum: 200 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;
}

export class CommandIdParam {
  @IsUUID(undefined, { message: 'id must be a command id (UUID)' }) id!: string;
}
