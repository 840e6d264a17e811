/** The operation registry: see registry.ts for the grammar and types.ts for an entry's shape. */
export {
  OPERATION_LIST,
  OPERATIONS,
  MAX_OPERATIONS,
  MAX_OPERATIONS_LENGTH,
  parseOperations,
  serializeOperations,
  buildPlan,
  type ParsedOperation,
  type Plan,
  type PlanStep,
} from './registry.js';
export { defineOperation, type OperationDef, type OperationContext, type OutputFormat, type Overlay } from './types.js';
export { OUTPUT_FORMATS } from './output.js';
export { planResize } from './geometry.js';
export { parseColor } from './common.js';
