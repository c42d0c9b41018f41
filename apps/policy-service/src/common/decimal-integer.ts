import { Transform } from 'class-transformer';

/**
 * A query parameter that is a whole number written in decimal digits becomes that number; anything else
 * (`0x10`, `1e3`, ` 7`, `+5`, `10.0`) is left as text, so that `@IsInt()` refuses it; `Number(text)` would
 * read all of those. Too large a number is left to `@Max()`.
 */
export function DecimalInteger(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => (typeof value === 'string' && /^[0-9]{1,20}$/.test(value) ? Number(value) : value));
}
