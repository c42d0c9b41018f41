import { generateSigningKeyPair, parsePrivateKey, publicKeyPem, type SigningKey } from '@portcullis/contracts';

function signingKey(keyId: string): SigningKey {
  return { keyId, privateKey: parsePrivateKey(generateSigningKeyPair().privateKeyPem) };
}

const adapterKeys = new Map<string, SigningKey>();

/**
 * Signing keys of a test run, made once per process: the policy service's key (every policy service a
 * spec starts signs with it, so adapters trust it) and one key per adapter id.
 */
export const testKeys = {
  policy: signingKey('policy-test'),
  /** The adapter's own key (stable for an adapter id within the run). */
  adapter(adapterId: string): SigningKey {
    let key = adapterKeys.get(adapterId);
    if (!key) {
      key = signingKey(`${adapterId}-test`);
      adapterKeys.set(adapterId, key);
    }
    return key;
  },
  /** What an adapter config holds to trust the policy service. */
  trustedPolicyKeys(): Record<string, string> {
    return { [testKeys.policy.keyId]: publicKeyPem(testKeys.policy.privateKey) };
  },
  publicPem(key: SigningKey): string {
    return publicKeyPem(key.privateKey);
  },
  /** The `signingKey` and `trustedKeys` settings of an adapter with this id. */
  adapterSettings(adapterId: string): { signingKey: { keyId: string; privateKey: string }; trustedKeys: Record<string, string> } {
    const key = testKeys.adapter(adapterId);
    return {
      signingKey: { keyId: key.keyId, privateKey: key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
      trustedKeys: testKeys.trustedPolicyKeys(),
    };
  },
};
