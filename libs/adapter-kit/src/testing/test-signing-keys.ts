import { generateSigningKeyPair, parsePrivateKey, type SigningKey } from '@portcullis/contracts';

const policy = generateSigningKeyPair();
const adapter = generateSigningKeyPair();

/** The key a fake policy service signs decisions with in unit tests (made once per process). */
export const testPolicySigningKey: SigningKey = { keyId: 'policy-unit-test', privateKey: parsePrivateKey(policy.privateKeyPem) };

/**
 * The `signingKey` and `trustedKeys` settings of an adapter in unit tests: its own key, and trust in
 * `testPolicySigningKey`.
 */
export function testAdapterKeySettings(): { signingKey: { keyId: string; privateKey: string }; trustedKeys: Record<string, string> } {
  return {
    signingKey: { keyId: 'adapter-unit-test', privateKey: adapter.privateKeyPem },
    trustedKeys: { [testPolicySigningKey.keyId]: policy.publicKeyPem },
  };
}
