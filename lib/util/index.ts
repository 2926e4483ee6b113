// util: helpers every layer shares (the bottom of the layer order; imports nothing from lib/).
export {
  ConfigError,
  configProblems,
  formatPath,
  parseConfig,
  type ConfigProblem,
  type IssueFormat,
} from './config_error.js';
export { syncDirectory, writeAll, writeAtomic, writeFileAtomic } from './atomic_write.js';
export {
  asObject,
  parseJson,
  readJsonFile,
  readJsonObject,
  readOptionalJsonFile,
  readOptionalTextFile,
  writeJsonFile,
  type JsonObject,
} from './json_file.js';
export { camelToSnake, snakeToCamel, toCamelKeys, toSnakeKeys, type KeyCaseOptions } from './case.js';
export { byModelType, supportedModelTypes, type ModelTypeEntry } from './model_type.js';
