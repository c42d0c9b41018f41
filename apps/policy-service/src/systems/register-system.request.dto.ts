import { MAX_EXEMPT_PRINCIPALS } from '@portcullis/contracts';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsOptional, IsString, Length, Matches, MaxLength } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';
import { NameField } from '../common/decision-fields';

const SLUG_MESSAGE = 'must be a lower-case slug (a-z, 0-9, "-"; 1-63 characters)';

export class RegisterSystemRequest {
  @ApiProperty({ example: 'stock-db' }) @Matches(SLUG_PATTERN, { message: `id ${SLUG_MESSAGE}` }) id!: string;
  @NameField('Stock database') name!: string;
  @ApiProperty({ example: 'postgres', description: 'the kind of adapter that enforces access on it' })
  @Matches(SLUG_PATTERN, { message: `kind ${SLUG_MESSAGE}` })
  kind!: string;
  @ApiProperty({
    example: 'pg-main',
    description: 'the adapter that enforces it: decisions are addressed to it, and only its signed acknowledgements count',
  })
  @Matches(SLUG_PATTERN, { message: `adapterId ${SLUG_MESSAGE}` })
  adapterId!: string;
  @ApiPropertyOptional({ example: ['breakglass_dba'], description: 'break-glass principals that are never touched' })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MAX_EXEMPT_PRINCIPALS)
  @ArrayUnique()
  @IsString({ each: true })
  @Length(1, 256, { each: true })
  @Matches(/^[^\u0000-\u001f\u007f]+$/, { each: true, message: 'exemptPrincipals must not contain control characters' })
  exemptPrincipals?: string[];
}

export class SystemIdParam {
  @Matches(SLUG_PATTERN, { message: `id ${SLUG_MESSAGE}` }) @MaxLength(63) id!: string;
}
