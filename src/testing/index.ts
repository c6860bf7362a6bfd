/** `zenovay-express/testing`: the public testing kit. */
export { createTestCollector } from './collector.js';
export type {
  CollectorAnswer,
  CollectorFault,
  CollectorResponse,
  RecordedEvent,
  TestCollector,
  TestCollectorOptions,
  WaitForOptions,
} from './collector.js';
