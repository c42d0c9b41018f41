import { normalizeIp } from '@nestjs/throttler';
import type { AuditEntryInput } from '../audit/audit-log.service';

/** A rejected credential, as far as it may be recorded: never the credential itself. */
export interface AuthFailureEvent {
  sourceAddress: string;
  method: string;
  path: string;
  reason: string;
  credential: 'jwt' | 'api-key' | 'unusable';
  /** Claimed by the rejected credential; NOT verified. */
  unverifiedSubject?: string;
  unverifiedApiKeyId?: string;
}

export interface AuthFailureAuditorOptions {
  windowMs: number;
  /** Appends entries in one transaction. */
  write: (entries: AuditEntryInput[]) => Promise<void>;
  /** Addresses with an open window at most; failures from further addresses are summed in one overflow summary. */
  maxAddresses?: number;
  now?: () => number;
  onError?: (message: string) => void;
}

interface AddressWindow {
  address: string;
  startedAt: number;
  lastAt: number;
  suppressed: number;
  refused: number;
  reasons: Record<string, number>;
}

interface OverflowWindow {
  startedAt: number;
  lastAt: number;
  attempts: number;
  sampleAddresses: Set<string>;
  reasons: Record<string, number>;
}

const SAMPLE_ADDRESSES = 20;
const ANONYMOUS = 'anonymous';

/**
 * Writes failed authentications to the audit history (`auth.failed`) without letting an attacker fill it.
 *
 * Per source address (IPv6 by /64) and window (`AUTH_FAILURE_AUDIT_WINDOW_SECONDS`, 60 s by default): the
 * first failure is written at once, in full (reason, path, claimed subject or key id marked unverified);
 * the following ones are only counted, and written as ONE summary entry (count, reasons, first and last
 * time, attempts refused with 429) when the window is over. So one address costs at most two audit rows
 * a minute however fast it sends, and with more than `maxAddresses` addresses failing in a window the rest
 * share a single overflow summary — the table and the audit hash chain stay cheap to protect.
 *
 * Requests WITHOUT any credential are not audited: they are not login attempts (health probes, a browser
 * opening a link, scanners), cost an attacker nothing, and would bury real failures. They get 401 only.
 */
export class AuthFailureAuditor {
  private readonly windows = new Map<string, AddressWindow>();
  private overflow: OverflowWindow | null = null;
  private readonly now: () => number;
  private readonly maxAddresses: number;

  constructor(private readonly options: AuthFailureAuditorOptions) {
    this.now = options.now ?? Date.now;
    this.maxAddresses = options.maxAddresses ?? 1000;
  }

  /** Records a failure; resolves once its entry (if one is due now) is written. Never throws. */
  async record(event: AuthFailureEvent): Promise<void> {
    const now = this.now();
    const id = normalizeIp(event.sourceAddress);
    const entries: AuditEntryInput[] = [];
    const open = this.windows.get(id);
    if (open && now - open.startedAt < this.options.windowMs) {
      open.suppressed += 1;
      open.lastAt = now;
      open.reasons[event.reason] = (open.reasons[event.reason] ?? 0) + 1;
      return;
    }
    if (open) {
      this.windows.delete(id);
      if (open.suppressed + open.refused > 0) entries.push(this.summary(open));
    }
    if (this.windows.size >= this.maxAddresses) {
      this.countOverflow(event, now);
    } else {
      this.windows.set(id, { address: event.sourceAddress, startedAt: now, lastAt: now, suppressed: 0, refused: 0, reasons: {} });
      entries.push(this.entry(event));
    }
    await this.write(entries);
  }

  /** A request refused with 429 for too many failures: counted in the address's summary, never written alone. */
  noteRefused(sourceAddress: string): void {
    const open = this.windows.get(normalizeIp(sourceAddress));
    if (open) {
      open.refused += 1;
      open.lastAt = this.now();
    }
  }

  /** Writes the summaries of windows that are over (all of them with `everything`, at shutdown). */
  async flush(everything = false): Promise<void> {
    const now = this.now();
    const entries: AuditEntryInput[] = [];
    for (const [id, window] of this.windows) {
      if (!everything && now - window.startedAt < this.options.windowMs) continue;
      this.windows.delete(id);
      if (window.suppressed + window.refused > 0) entries.push(this.summary(window));
    }
    if (this.overflow && (everything || now - this.overflow.startedAt >= this.options.windowMs)) {
      entries.push(this.overflowSummary(this.overflow));
      this.overflow = null;
    }
    await this.write(entries);
  }

  private entry(event: AuthFailureEvent): AuditEntryInput {
    return {
      actor: ANONYMOUS,
      action: 'auth.failed',
      reason: event.reason,
      sourceAddress: event.sourceAddress,
      details: {
        method: event.method,
        path: event.path,
        credential: event.credential,
        // Taken from the rejected credential, so anyone could have written them: NOT who was there.
        ...(event.unverifiedSubject !== undefined ? { unverifiedSubject: event.unverifiedSubject } : {}),
        ...(event.unverifiedApiKeyId !== undefined ? { unverifiedApiKeyId: event.unverifiedApiKeyId } : {}),
        windowSeconds: Math.round(this.options.windowMs / 1000),
      },
    };
  }

  private summary(window: AddressWindow): AuditEntryInput {
    return {
      actor: ANONYMOUS,
      action: 'auth.failed',
      reason: `${window.suppressed} more failed authentication(s) from this address${window.refused ? `, ${window.refused} request(s) refused (429)` : ''}`,
      sourceAddress: window.address,
      details: {
        coalesced: true,
        attempts: window.suppressed,
        refused: window.refused,
        reasons: window.reasons,
        from: new Date(window.startedAt).toISOString(),
        to: new Date(window.lastAt).toISOString(),
      },
    };
  }

  private countOverflow(event: AuthFailureEvent, now: number): void {
    this.overflow ??= { startedAt: now, lastAt: now, attempts: 0, sampleAddresses: new Set(), reasons: {} };
    this.overflow.attempts += 1;
    this.overflow.lastAt = now;
    this.overflow.reasons[event.reason] = (this.overflow.reasons[event.reason] ?? 0) + 1;
    if (this.overflow.sampleAddresses.size < SAMPLE_ADDRESSES) this.overflow.sampleAddresses.add(event.sourceAddress);
  }

  private overflowSummary(overflow: OverflowWindow): AuditEntryInput {
    return {
      actor: ANONYMOUS,
      action: 'auth.failed',
      reason: `${overflow.attempts} failed authentication(s) from more than ${this.maxAddresses} addresses`,
      details: {
        coalesced: true,
        overflow: true,
        attempts: overflow.attempts,
        reasons: overflow.reasons,
        sampleAddresses: [...overflow.sampleAddresses],
        from: new Date(overflow.startedAt).toISOString(),
        to: new Date(overflow.lastAt).toISOString(),
      },
    };
  }

  private async write(entries: AuditEntryInput[]): Promise<void> {
    if (entries.length === 0) return;
    try {
      await this.options.write(entries);
    } catch (error) {
      // The 401 stands either way; a failing audit write is reported, not turned into a 500.
      this.options.onError?.(`could not write ${entries.length} auth.failed audit entr${entries.length === 1 ? 'y' : 'ies'}: ${(error as Error).message}`);
    }
  }
}
