// Dispatch on a Hugging Face config's model_type: one lookup and one error wording for every table
// keyed by it (model families, processors).

export interface ModelTypeEntry {
  readonly modelTypes: readonly string[];
}

/**
 * The entry serving `modelType`. `where` names the config; `lacking` says what is missing for an
 * unknown type ('is not supported', 'has no processor'); the error lists the supported types.
 */
export function byModelType<E extends ModelTypeEntry>(
  entries: readonly E[],
  modelType: unknown,
  where: string,
  lacking = 'is not supported',
): E {
  const entry = typeof modelType === 'string' ? entries.find((e) => e.modelTypes.includes(modelType)) : undefined;
  if (entry !== undefined) return entry;
  const supported = `(supported: ${supportedModelTypes(entries).join(', ')})`;
  if (modelType === undefined) throw new Error(`${where}: no model_type ${supported}`);
  const shown = typeof modelType === 'string' ? `'${modelType}'` : JSON.stringify(modelType);
  throw new Error(`${where}: model_type ${shown} ${lacking} ${supported}`);
}

export const supportedModelTypes = (entries: readonly ModelTypeEntry[]): string[] =>
  entries.flatMap((e) => e.modelTypes);
