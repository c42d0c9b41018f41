import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { ED25519_IMPLEMENTATION } from '@portcullis/contracts';
import { loadPolicyServiceConfig } from './config/policy-service.config';
import { createPolicyService } from './policy-service.app';

async function main(): Promise<void> {
  const config = loadPolicyServiceConfig();
  const app = await createPolicyService(config);
  new Logger('PolicyService').log(
    `listening on ${await app.getUrl()} (API under /api/v1, docs at /api/docs); Ed25519 signatures via ${ED25519_IMPLEMENTATION}`,
  );
}

main().catch((error: unknown) => {
  // eslint-disable-next-line no-console
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
