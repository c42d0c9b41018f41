import { BadRequestException, Controller, Get, Logger, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { once } from 'node:events';
import { Roles } from '../auth/auth.decorators';
import { READERS, type Role } from '../auth/roles';
import { AuditLog } from './audit-log.service';
import { AuditExportRequest } from './audit-export.request.dto';
import { AuditQueryRequest } from './audit-query.request.dto';
import { AuditVerifyRequest } from './audit-verify.request.dto';
import { AuditTrail } from './audit-trail.service';

/** Who may verify and export the whole history. */
const AUDITORS: Role[] = ['auditor', 'admin'];
const FLUSH_BYTES = 64 * 1024;

@ApiTags('audit')
@ApiBearerAuth()
@Controller('audit')
export class AuditController {
  private readonly log = new Logger(AuditController.name);

  constructor(
    private readonly auditLog: AuditLog,
    private readonly auditTrail: AuditTrail,
  ) {}

  /** The append-only history, newest first; filter by group, system, command, actor, action and time. */
  @Get()
  @Roles(...READERS)
  find(@Query() query: AuditQueryRequest) {
    return this.auditLog.find({
      groupId: query.groupId,
      systemId: query.systemId,
      commandId: query.commandId,
      actor: query.actor,
      action: query.action,
      from: query.from ? new Date(query.from) : undefined,
      to: query.to ? new Date(query.to) : undefined,
      before: query.cursor ? Number(query.cursor) : undefined,
      limit: query.limit ?? 100,
    });
  }

  /** The public keys that verify the audit checkpoints and signed exports (Ed25519, SPKI PEM). */
  @Get('keys')
  @Roles(...READERS)
  keys() {
    return { keys: this.auditTrail.publicKeys() };
  }

  /**
   * Recomputes the hash chain from the first entry, checks every signed checkpoint and that the recorded
   * head is where the entries end, and compares the database with what the running service verified and
   * signed before (`checkpointWriter`). `intact: false` names the first break (seq, reason, expected,
   * actual). `previousSeq` + `previousHeadHash` (an earlier export's trailer): that head must still be on the chain.
   */
  @Get('verify')
  @Roles(...AUDITORS)
  verify(@Query() query: AuditVerifyRequest) {
    if ((query.previousSeq === undefined) !== (query.previousHeadHash === undefined)) {
      throw new BadRequestException('previousSeq and previousHeadHash go together');
    }
    return this.auditTrail.verify(
      query.previousSeq !== undefined ? { seq: query.previousSeq, headHash: query.previousHeadHash! } : undefined,
    );
  }

  /**
   * The whole history with its hashes and checkpoints, streamed. `jsonl` (default) ends with a signed
   * trailer and is checked offline with `npm run audit:verify -- export.jsonl --public-key policy.pub.pem`;
   * `csv` is for spreadsheets.
   */
  @Get('export')
  @Roles(...AUDITORS)
  @ApiProduces('application/x-ndjson', 'text/csv')
  async export(@Query() query: AuditExportRequest, @Res() response: Response): Promise<void> {
    const format = query.format ?? 'jsonl';
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    response.status(200);
    response.setHeader('Content-Type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
    response.setHeader('Content-Disposition', `attachment; filename="portcullis-audit-${stamp}.${format}"`);
    response.setHeader('Cache-Control', 'no-store');
    const lines = format === 'csv' ? this.auditTrail.exportCsv() : this.auditTrail.exportJsonLines();
    let buffer = '';
    const flush = async () => {
      if (buffer === '') return;
      const chunk = buffer;
      buffer = '';
      if (!response.write(chunk)) await Promise.race([once(response, 'drain'), once(response, 'close')]);
    };
    try {
      for await (const line of lines) {
        if (response.destroyed) {
          await lines.return(undefined);
          return;
        }
        buffer += line;
        if (buffer.length >= FLUSH_BYTES) await flush();
      }
      await flush();
      response.end();
    } catch (error) {
      // Headers are sent: cut the stream short. A JSON Lines export then lacks its signed trailer, which
      // the verifier reports as a truncated export.
      this.log.error(`audit export failed: ${(error as Error).message}`);
      response.destroy(error as Error);
    }
  }
}
