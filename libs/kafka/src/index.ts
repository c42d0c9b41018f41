export * from './kafka-connection';
export * from './topic-specs';
export * from './topic-admin';
export * from './reliable-producer';
export * from './partition-routing';
export * from './abandoned-consumer';
