export * from './topics';
export * from './identifiers';
export * from './envelope';
export * from './codec';
export * from './system-access-changed';
export * from './access-acknowledged';
export * from './adapter-heartbeat';
