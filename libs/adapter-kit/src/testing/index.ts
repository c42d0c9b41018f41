/** Fakes for the adapter-kit's ports, for tests only: import from `@portcullis/adapter-kit/testing`. */
export * from './fake-access.enforcer';
export * from './fake-desired-state.source';
export * from './in-memory-enforcement.journal';
export * from './recording-event.publisher';
export * from './system-access-changed.builder';
export * from './test-signing-keys';
export * from './system-state.fixture';
