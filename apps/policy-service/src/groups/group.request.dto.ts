import { ApiProperty } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayUnique, IsArray, IsString, Length, Matches } from 'class-validator';
import { SLUG_PATTERN } from '@portcullis/contracts';

const SLUG_MESSAGE = 'must be a lower-case slug (a-z, 0-9, "-"; 1-63 characters)';

export class UpdateGroupRequest {
  @ApiProperty({ example: 'Back office' }) @IsString() @Length(1, 200) name!: string;
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
