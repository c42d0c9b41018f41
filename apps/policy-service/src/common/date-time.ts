import { isISO8601, ValidateBy } from 'class-validator';

/** A calendar date, optionally with a time and then always its offset: a time without one would be the server's local time. */
const CALENDAR_DATE_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

/**
 * A point in time as ISO 8601 text that is also a real instant for this service: a calendar date
 * (`2027-01-31`) or a date-time with its offset (`2027-01-31T00:00:00Z`). `IsISO8601` alone let week and
 * ordinal dates through (`2030-W01-1`), which `Date` cannot read or reads wrongly: they reached PostgreSQL as
 * an invalid date (a 500) or compared as NaN. The value stays a string; callers convert it.
 */
export function IsDateTime(property: string): PropertyDecorator {
  return ValidateBy({
    name: 'isDateTime',
    validator: {
      validate: (value: unknown) =>
        typeof value === 'string' && CALENDAR_DATE_TIME.test(value) && isISO8601(value, { strict: true }) && Number.isFinite(Date.parse(value)),
      defaultMessage: () => `${property} must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z`,
    },
  });
}
