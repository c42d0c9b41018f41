/**
 * One Jest run covers unit specs (`*.spec.ts`, beside the code) and integration specs
 * (`*.int-spec.ts` under a test folder), which need the real broker and servers that `npm test`
 * (deploy/run-tests.ts) starts once for the whole run and describes in PORTCULLIS_TEST_ENV.
 */
const swc = [
  '@swc/jest',
  {
    jsc: {
      target: 'es2022',
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
    },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  },
];

const moduleNameMapper = {
  '^@portcullis/contracts$': '<rootDir>/libs/contracts/src',
  '^@portcullis/contracts/(.*)$': '<rootDir>/libs/contracts/src/$1',
  '^@portcullis/kafka$': '<rootDir>/libs/kafka/src',
  '^@portcullis/kafka/(.*)$': '<rootDir>/libs/kafka/src/$1',
  '^@portcullis/adapter-kit$': '<rootDir>/libs/adapter-kit/src',
  '^@portcullis/adapter-kit/(.*)$': '<rootDir>/libs/adapter-kit/src/$1',
  '^@test/support/(.*)$': '<rootDir>/test/support/$1',
};

const common = { transform: { '^.+\\.(t|j)s$': swc }, moduleNameMapper, testEnvironment: 'node' };

module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs,deploy,bench}/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/{apps,libs}/**/test/**/*.int-spec.ts', '<rootDir>/test/**/*.int-spec.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/support/integration-setup.ts'],
      slowTestThreshold: 30,
    },
  ],
};
