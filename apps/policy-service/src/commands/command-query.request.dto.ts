import { ApiPropertyOptional } from '@nestjs/swagger';
import { DecimalInteger } from '../common/decimal-integer';
import { IsInt, IsOptional, IsUUID, Matches, Max, Min, ValidateBy } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';

/** `nextCursor`: the last command's `requestedAt.toISOString()`, `_`, its id. */
const COMMAND_CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A cursor as `nextCursor` writes it, with a time that exists (`9999-99-99T…` has the shape but is no time). */
export function isCommandCursor(value: unknown): boolean {
  const match = typeof value === 'string' ? COMMAND_CURSOR.exec(value) : null;
  return match !== null && Number.isFinite(Date.parse(match[1]));
}

export class CommandQueryRequest {
  @ApiPropertyOptional() @IsOptional() @Matches(SLUG_PATTERN, { message: 'groupId must be a slug' }) groupId?: string;
  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOptional()
  @ValidateBy({
    name: 'isCommandCursor',
    validator: { validate: isCommandCursor, defaultMessage: () => 'cursor must be the nextCursor of a previous page' },
  })
  cursor?: string;
  @ApiPropertyOptional({ default: 50, minimum: 1, maximum: 200 })
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;
}

export class CommandIdParam {
  @IsUUID(undefined, { message: 'id must be a command id (UUID)' }) id!: string;
}
