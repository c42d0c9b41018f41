/**
 * The conformance suite every adapter runs against its real target: import from
 * `@portcullis/adapter-kit/conformance` in an integration spec (test-only; it registers Jest blocks).
 */
export * from './describe-enforcer-conformance';
export * from './target-fixture';
