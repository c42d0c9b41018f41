export * from './adapter.module';
export * from './adapter.host';
export * from './adapter-health.controller';
export * from './bootstrap-adapter';
