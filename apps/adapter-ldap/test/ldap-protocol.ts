/** What the specs need to talk to a directory as its administrators and users do. */

/** Who am I? (RFC 4532): a round trip that also says which identity a connection is bound as. */
export const WHO_AM_I_OID = '1.3.6.1.4.1.4203.1.11.3';

/** RFC 4514: a string as an attribute value inside a DN (for creating entries; the enforcer never builds DNs). */
export function escapeDnValue(value: string): string {
  return value
    .replace(/[\\",+;<>=]/g, (character) => `\\${character}`)
    .replace(/^[ #]/, (character) => `\\${character}`)
    .replace(/ $/, '\\ ');
}
