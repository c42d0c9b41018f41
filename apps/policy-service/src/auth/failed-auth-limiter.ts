import { normalizeIp } from '@nestjs/throttler';

export interface FailedAuthLimiterOptions {
  /** Failures allowed per address per window; the next request is refused until the window ends. */
  limit: number;
  windowMs: number;
  /** Addresses tracked at most; beyond, expired windows are dropped, then the oldest. */
  maxTracked?: number;
  now?: () => number;
}

interface Window {
  startedAt: number;
  failures: number;
}

/**
 * Counts failed authentications per source address (IPv6 by /64, like @nestjs/throttler) in fixed
 * windows. @nestjs/throttler counts every request, so it cannot limit failures alone: a busy automation
 * with a valid key must never be slowed down by this, and a guesser must be stopped whatever it sends
 * next — even a correct credential gets 429 from a blocked address until the window ends, so guessing
 * cannot be confirmed. In memory, per replica (the limit is per replica with several).
 */
export class FailedAuthLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly now: () => number;
  private readonly maxTracked: number;

  constructor(private readonly options: FailedAuthLimiterOptions) {
    this.now = options.now ?? Date.now;
    this.maxTracked = options.maxTracked ?? 100_000;
  }

  /** Seconds until the address may try again, or 0 when it is not blocked. */
  blockedFor(address: string): number {
    const window = this.current(key(address));
    if (!window || window.failures < this.options.limit) return 0;
    return Math.max(1, Math.ceil((window.startedAt + this.options.windowMs - this.now()) / 1000));
  }

  /** Records a failure; returns whether the address is now blocked. */
  recordFailure(address: string): boolean {
    const id = key(address);
    let window = this.current(id);
    if (!window) {
      if (this.windows.size >= this.maxTracked) this.evict();
      window = { startedAt: this.now(), failures: 0 };
      this.windows.set(id, window);
    }
    window.failures += 1;
    return window.failures >= this.options.limit;
  }

  /** Drops expired windows (called periodically). */
  sweep(): void {
    const now = this.now();
    for (const [id, window] of this.windows) if (now - window.startedAt >= this.options.windowMs) this.windows.delete(id);
  }

  get tracked(): number {
    return this.windows.size;
  }

  private current(id: string): Window | undefined {
    const window = this.windows.get(id);
    if (window && this.now() - window.startedAt >= this.options.windowMs) {
      this.windows.delete(id);
      return undefined;
    }
    return window;
  }

  private evict(): void {
    this.sweep();
    // Still full: forget the oldest tenth (Map keeps insertion order).
    if (this.windows.size >= this.maxTracked) {
      let drop = Math.ceil(this.maxTracked / 10);
      for (const id of this.windows.keys()) {
        if (drop-- <= 0) break;
        this.windows.delete(id);
      }
    }
  }
}

function key(address: string): string {
  return normalizeIp(address);
}
