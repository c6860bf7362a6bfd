/**
 * Jest runs the TypeScript sources through ts-jest as CommonJS. p-queue 9 and its p-timeout are
 * ESM-only, so they are transformed too (deliberately: everything else in node_modules is not).
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.[tj]s$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.jest.json' }],
  },
  transformIgnorePatterns: ['/node_modules/(?!(p-queue|p-timeout)/)'],
  moduleNameMapper: {
    // A worker thread runs JavaScript: the tests start the built delivery worker.
    '^\\./worker-location\\.js$': '<rootDir>/test/helpers/worker-location.ts',
    // Sources import siblings as './x.js' (ESM style); the TypeScript file is what exists.
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testTimeout: 15000,
};
