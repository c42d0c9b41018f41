export * from './canonical-json';
export * from './signing-keys';
export * from './message-signature';
