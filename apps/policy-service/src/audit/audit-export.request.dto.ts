import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional } from 'class-validator';

export class AuditExportRequest {
  @ApiPropertyOptional({ enum: ['jsonl', 'csv'], default: 'jsonl', description: 'jsonl: verifiable (npm run audit:verify); csv: for spreadsheets' })
  @IsOptional()
  @IsIn(['jsonl', 'csv'])
  format?: 'jsonl' | 'csv';
}
