import { z } from 'zod';
import { AccessAcknowledgedV1Schema } from './access-acknowledged';
import { AccessDriftDetectedV1Schema } from './access-drift-detected';
import { SecurityAlertV1Schema } from './security-alert';

/** Everything adapters report on `Topics.acknowledgements`, told apart by `type`. */
export const AdapterReportV1Schema = z.discriminatedUnion('type', [
  AccessAcknowledgedV1Schema,
  AccessDriftDetectedV1Schema,
  SecurityAlertV1Schema,
]);

export type AdapterReportV1 = z.infer<typeof AdapterReportV1Schema>;
