// Planning SQL from API requests against the schema catalog: names resolved and checked per
// role, filters compiled, values bound as typed parameters, results decoded to wire rows.
export { Access, type ColumnUse, quote } from './access';
export { planCall } from './call';
export {
  compileFilter,
  explainTextSearchError,
  MAX_FILTER_DEPTH,
  MAX_FILTER_NODES,
  MAX_IN_VALUES,
  type TextSearchConfigs,
} from './filter';
export { planDelete, planInsert, planUpdate } from './mutations';
export { explainError, type Plan } from './plan';
export { EMPTY_RESULT, toResultSet, toRow } from './results';
export {
  orderByClause,
  planSelect,
  resolveSelect,
  type SelectLimits,
  type SelectQuery,
  selectList,
} from './select';
