/** `zenovay-express/testing`: the public testing kit. */
export { createTestCollector } from './collector.js';
export type {
  Brownout,
  BrownoutOptions,
  CollectorAnswer,
  CollectorFault,
  CollectorLatency,
  CollectorResponse,
  RecordedEvent,
  TestCollector,
  TestCollectorOptions,
  WaitForOptions,
} from './collector.js';
export { createInspector } from './inspector.js';
export type {
  InspectedEvent,
  Inspector,
  InspectorOptions,
  InspectorState,
  RefusedRequest,
  StatsSource,
  WatchedTracker,
} from './inspector.js';
