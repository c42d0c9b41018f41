export * from './kafka-event.decorator';
export * from './kafka-event.server';
