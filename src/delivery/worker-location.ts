/**
 * Where the delivery worker's script is: beside the built entry point. The CommonJS build gets
 * `import.meta.url` from tsup's shim; Jest maps this module to the built file.
 */
export function workerScript(): URL {
  return new URL('./delivery-worker.js', import.meta.url);
}
