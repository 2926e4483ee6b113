// Checks demo-output/summary.json's shape at the report's entry, so that a bad summary fails with the
// key at fault ("summary.stages[1].after.byType: expected an object, got undefined") instead of a
// blank plot or a TypeError deep in the HTML. Numbers the plots draw must be finite; accuracies lie
// in [0, 1] or are null (an evaluation with no question of a kind scores null, as evaluate.mjs does);
// a history's loss / reward / accuracy may be null (NaN and missing values become null in JSON).

/** Throws when `summary` lacks a key the report reads or holds a bad value; returns it unchanged. */
export function validateSummary(summary) {
  expectObject(summary, 'summary');
  expectNumber(summary.seed, 'summary.seed');
  expectNumber(summary.totalSeconds, 'summary.totalSeconds');
  expectObject(summary.model, 'summary.model');
  expectString(summary.model.family, 'summary.model.family');
  expectNumber(summary.model.parameters, 'summary.model.parameters');
  expectString(summary.model.path, 'summary.model.path');
  expectStringList(summary.questionTypes, 'summary.questionTypes', { nonEmpty: true });
  expectStringList(summary.flawedColours, 'summary.flawedColours', { nonEmpty: false });
  expectArray(summary.stages, 'summary.stages', { nonEmpty: true });
  summary.stages.forEach((stage, i) => checkStage(stage, `summary.stages[${i}]`, summary.questionTypes));
  expectUnique(
    summary.stages.map((stage) => stage.name),
    'summary.stages[].name',
  );
  expectArray(summary.examples, 'summary.examples', { nonEmpty: false });
  const stageNames = summary.stages.map((stage) => stage.name);
  summary.examples.forEach((example, i) => checkExample(example, `summary.examples[${i}]`, stageNames));
  return summary;
}

function checkStage(stage, key, questionTypes) {
  expectObject(stage, key);
  expectString(stage.name, `${key}.name`);
  expectNumber(stage.seconds, `${key}.seconds`);
  expectNumber(stage.steps, `${key}.steps`);
  expectArray(stage.history, `${key}.history`, { nonEmpty: false });
  stage.history.forEach((entry, i) => {
    const at = `${key}.history[${i}]`;
    expectObject(entry, at);
    expectNumber(entry.step, `${at}.step`);
    for (const metric of ['loss', 'reward', 'accuracy']) expectNumberOrNull(entry[metric], `${at}.${metric}`);
  });
  checkMetrics(stage.before, `${key}.before`, questionTypes);
  checkMetrics(stage.after, `${key}.after`, questionTypes);
}

function checkMetrics(metrics, key, questionTypes) {
  expectObject(metrics, key);
  expectObject(metrics.byType, `${key}.byType`);
  for (const type of questionTypes) expectFractionOrNull(metrics.byType[type], `${key}.byType.${type}`);
  for (const field of ['flawed', 'overall', 'preference']) expectFractionOrNull(metrics[field], `${key}.${field}`);
}

function checkExample(example, key, stageNames) {
  expectObject(example, key);
  expectString(example.image, `${key}.image`);
  // The page links the image by this path, so it must be relative to the output folder.
  if (/^([a-zA-Z]:)?[\\/]/.test(example.image))
    fail(`${key}.image`, 'a path relative to the output folder', example.image);
  for (const field of ['question', 'answer', 'before'])
    expectString(example[field], `${key}.${field}`, { empty: true });
  expectObject(example.after, `${key}.after`);
  for (const name of stageNames) expectString(example.after[name], `${key}.after.${name}`, { empty: true });
}

function expectObject(value, key) {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(key, 'an object', value);
}

function expectArray(value, key, { nonEmpty }) {
  if (!Array.isArray(value)) fail(key, 'an array', value);
  if (nonEmpty && value.length === 0) fail(key, 'a non-empty array', value);
}

function expectStringList(value, key, { nonEmpty }) {
  expectArray(value, key, { nonEmpty });
  value.forEach((item, i) => expectString(item, `${key}[${i}]`));
  expectUnique(value, key);
}

function expectUnique(values, key) {
  const seen = new Set();
  for (const value of values) {
    if (seen.has(value)) throw new TypeError(`${key}: expected distinct values, got ${JSON.stringify(value)} twice`);
    seen.add(value);
  }
}

function expectString(value, key, { empty = false } = {}) {
  if (typeof value !== 'string') fail(key, 'a string', value);
  if (!empty && value.length === 0) fail(key, 'a non-empty string', value);
}

function expectNumber(value, key) {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(key, 'a finite number', value);
}

function expectNumberOrNull(value, key) {
  if (value !== null && (typeof value !== 'number' || !Number.isFinite(value))) {
    fail(key, 'a finite number or null', value);
  }
}

function expectFractionOrNull(value, key) {
  if (value === null) return;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) fail(key, 'a number in [0, 1] or null', value);
}

function fail(key, expected, actual) {
  throw new TypeError(`${key}: expected ${expected}, got ${describe(actual)}`);
}

function describe(value) {
  if (value === undefined) return 'undefined';
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
