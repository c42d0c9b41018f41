// Integration specs start services and wait on real brokers and servers: give hooks and tests room.
jest.setTimeout(120_000);
