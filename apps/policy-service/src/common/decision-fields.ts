import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, Length, Matches } from 'class-validator';

/** Text without control characters, C0 or C1 (tabs and line breaks allowed). */
export const PRINTABLE = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$/;

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
    Matches(NOT_BLANK, { message: 'reason must not be blank' }),
  );
}

/** At least one character that is not white space. */
export const NOT_BLANK = /\S/;
/** One line of text: no control characters at all (C0, DEL, C1). */
const ONE_LINE = /^[^\u0000-\u001f\u007f-\u009f]*$/;

/** A display name (of a system, a group): 1-200 characters on one line, not blank, no control characters. */
export function NameField(example: string): PropertyDecorator {
  return applyDecorators(
    ApiProperty({ example }),
    IsString(),
    Length(1, 200),
    Matches(ONE_LINE, { message: 'name must be one line without control characters' }),
    Matches(NOT_BLANK, { message: 'name must not be blank' }),
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
