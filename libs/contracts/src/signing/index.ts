export * from './canonical-json';
export * from './signing-keys';
export * from './message-signature';
export { ED25519_IMPLEMENTATION } from './ed25519';
