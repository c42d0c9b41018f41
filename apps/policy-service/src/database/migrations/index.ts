import { InitialSchema1764320400000 } from './1764320400000-InitialSchema';
import { SystemDrift1764331200000 } from './1764331200000-SystemDrift';
import { AdapterTrust1764400000000 } from './1764400000000-AdapterTrust';
import { AuditHashChain1764400100000 } from './1764400100000-AuditHashChain';
import { AppRoleGrants1764400150000 } from './1764400150000-AppRoleGrants';
import { ApiKeys1764400200000 } from './1764400200000-ApiKeys';
import { ApprovalsAndExemptions1764400300000 } from './1764400300000-ApprovalsAndExemptions';
import { EvidenceAppendOnly1764400400000 } from './1764400400000-EvidenceAppendOnly';
import { OutboxRoutes1764400500000 } from './1764400500000-OutboxRoutes';
import { OutboxNotifyTrigger1764400600000 } from './1764400600000-OutboxNotifyTrigger';
import { ReissueForRouting1764400700000 } from './1764400700000-ReissueForRouting';
import { AdapterStateStore1764400800000 } from './1764400800000-AdapterStateStore';
import { OpenTargetsIndex1764400900000 } from './1764400900000-OpenTargetsIndex';
import { AuditLinkedAtCommit1764401000000 } from './1764401000000-AuditLinkedAtCommit';
import { OutboxUncertainSends1764401100000 } from './1764401100000-OutboxUncertainSends';

/** Every migration, in order. Listed explicitly so the bundled service needs no file globbing. */
export const policyServiceMigrations = [
  InitialSchema1764320400000,
  SystemDrift1764331200000,
  AdapterTrust1764400000000,
  AuditHashChain1764400100000,
  AppRoleGrants1764400150000,
  ApiKeys1764400200000,
  ApprovalsAndExemptions1764400300000,
  EvidenceAppendOnly1764400400000,
  OutboxRoutes1764400500000,
  OutboxNotifyTrigger1764400600000,
  ReissueForRouting1764400700000,
  AdapterStateStore1764400800000,
  OpenTargetsIndex1764400900000,
  AuditLinkedAtCommit1764401000000,
  OutboxUncertainSends1764401100000,
];
