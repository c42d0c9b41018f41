import { ApiPropertyOptional } from '@nestjs/swagger';
import { DecimalInteger } from '../common/decimal-integer';
import { IsInt, IsOptional, Matches, Max, Min } from 'class-validator';

/** Optionally, a head kept from an earlier export (its trailer's `lastSeq` and `headHash`), which must still be on the chain. */
export class AuditVerifyRequest {
  @ApiPropertyOptional({ description: "an earlier export's trailer lastSeq (with previousHeadHash)" })
  @IsOptional()
  @DecimalInteger()
  @IsInt()
  @Min(0)
  // Beyond this a number is not exact (and 1e30 is an "integer" that bigint cannot take).
  @Max(Number.MAX_SAFE_INTEGER)
  previousSeq?: number;

  @ApiPropertyOptional({ description: "an earlier export's trailer headHash (with previousSeq)" })
  @IsOptional()
  @Matches(/^[0-9a-f]{64}$/, { message: 'previousHeadHash must be 64 lowercase hex digits' })
  previousHeadHash?: string;
}
