import { Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';

/** How many recently published records are remembered (a few MB of hashes). */
const CAPACITY = 100_000;

/**
 * The records this instance's relay published recently, by the SHA-256 of their bytes. The decisions
 * watch uses it to recognise the service's own records without checking their signature again (the bytes
 * are exactly those signed here); anything else it verifies.
 */
@Injectable()
export class PublishedRecords {
  private readonly hashes = new Set<string>();

  remember(value: string | Buffer): void {
    const hash = digest(value);
    this.hashes.delete(hash);
    this.hashes.add(hash);
    if (this.hashes.size > CAPACITY) this.hashes.delete(this.hashes.values().next().value as string);
  }

  published(value: Buffer): boolean {
    return this.hashes.has(digest(value));
  }
}

function digest(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('base64');
}
