import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';

/** Text without control characters (tabs and line breaks allowed). */
export const PRINTABLE = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/;

/**
 * The reason a person gives for a decision or a change: 3-2000 characters, no control characters. It goes
 * into the audit trail and into every signed decision, so it is validated the same way everywhere.
 */
export function ReasonField(example: string, options: { minLength?: number } = {}): PropertyDecorator {
  return applyDecorators(
    ApiProperty({ example }),
    IsString(),
    Length(options.minLength ?? 3, 2000),
    Matches(PRINTABLE, { message: 'reason must not contain control characters' }),
  );
}

/** An optional incident reference (a ticket id): 1-200 printable ASCII characters. */
export function IncidentRefField(): PropertyDecorator {
  return applyDecorators(
    ApiPropertyOptional({ example: 'INC-2041' }),
    IsOptional(),
    IsString(),
    Length(1, 200),
    Matches(/^[\x20-\x7e]+$/, { message: 'incidentRef must be printable ASCII' }),
  );
}
