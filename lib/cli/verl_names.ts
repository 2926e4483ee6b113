// A recipe's `verl:` block: verl's ppo_trainer names (as InternVL3.5's GSPO scripts set them, dotted
// or nested) mapped onto the GRPO trainer's TRL names, so a verl user's settings carry over as written.
// verl counts prompts where TRL counts completions: train_batch_size prompts per generation and
// ppo_mini_batch_size prompts per optimizer step become generation_batch_size and the
// micro-batch x accumulation split over n completions each. A verl setting with no equivalent here
// is an error that names it, never silently dropped.
import { ConfigError, type ConfigProblem } from '../util/config_error.js';
import { didYouMean } from '../util/nearest.js';

type Settings = Record<string, unknown>;

/** The GRPO recipe keys (snake_case) the block sets. */
export function fromVerlNames(block: unknown, file: string): Settings {
  if (typeof block !== 'object' || block === null || Array.isArray(block)) {
    throw new ConfigError(file, [{ path: 'verl', message: 'expected a mapping of verl settings' }]);
  }
  const flat = flatten(block as Settings);
  const problems: ConfigProblem[] = [];
  const read = new Set<string>();
  const get = (key: string): unknown => {
    for (const name of [key, `actor_rollout_ref.${key}`]) {
      if (name in flat) {
        read.add(name);
        return flat[name];
      }
    }
    return undefined;
  };
  const out = mapSettings(get, (key, message) => problems.push({ path: `verl.${key}`, message }));
  for (const key of Object.keys(flat)) {
    if (!read.has(key)) {
      problems.push({ path: `verl.${key}`, message: `not a verl setting this trainer maps${didYouMean(key, KNOWN)}` });
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return out;
}

const KNOWN = [
  'algorithm.adv_estimator',
  'algorithm.norm_adv_by_std_in_grpo',
  'algorithm.use_kl_in_reward',
  'data.train_batch_size',
  'data.max_prompt_length',
  'data.max_response_length',
  'actor_rollout_ref.rollout.n',
  'actor_rollout_ref.rollout.temperature',
  'actor_rollout_ref.rollout.top_p',
  'actor_rollout_ref.rollout.top_k',
  'actor_rollout_ref.actor.ppo_mini_batch_size',
  'actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu',
  'actor_rollout_ref.actor.ppo_epochs',
  'actor_rollout_ref.actor.clip_ratio',
  'actor_rollout_ref.actor.clip_ratio_low',
  'actor_rollout_ref.actor.clip_ratio_high',
  'actor_rollout_ref.actor.policy_loss.loss_mode',
  'actor_rollout_ref.actor.loss_agg_mode',
  'actor_rollout_ref.actor.use_kl_loss',
  'actor_rollout_ref.actor.kl_loss_coef',
  'actor_rollout_ref.actor.kl_loss_type',
  'actor_rollout_ref.actor.entropy_coeff',
  'actor_rollout_ref.actor.grad_clip',
  'actor_rollout_ref.actor.optim.lr',
  'actor_rollout_ref.actor.optim.weight_decay',
  'actor_rollout_ref.actor.optim.lr_warmup_steps_ratio',
  'trainer.total_epochs',
  'trainer.total_training_steps',
  'trainer.save_freq',
];

type Problem = (key: string, message: string) => void;

function mapSettings(get: (key: string) => unknown, problem: Problem): Settings {
  const out: Settings = {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined) out[key] = value;
  };
  const estimator = get('algorithm.adv_estimator');
  if (estimator !== undefined && estimator !== 'grpo') {
    problem('algorithm.adv_estimator', `only grpo is built (the GRPO trainer), not ${JSON.stringify(estimator)}`);
  }
  const norm = get('algorithm.norm_adv_by_std_in_grpo');
  if (norm !== undefined) set('scale_rewards', norm === true ? 'group' : 'none');
  if (get('algorithm.use_kl_in_reward') === true) {
    problem('algorithm.use_kl_in_reward', 'a KL penalty in the reward is not built; use actor.use_kl_loss (beta)');
  }
  set('max_prompt_length', get('data.max_prompt_length'));
  set('max_completion_length', get('data.max_response_length'));
  set('temperature', get('rollout.temperature'));
  set('top_p', get('rollout.top_p'));
  const topK = get('rollout.top_k');
  if (topK !== undefined) set('top_k', topK === -1 ? 0 : topK);
  set('num_iterations', get('actor.ppo_epochs'));
  set('max_grad_norm', get('actor.grad_clip'));
  set('learning_rate', get('actor.optim.lr'));
  set('weight_decay', get('actor.optim.weight_decay'));
  set('warmup_ratio', get('actor.optim.lr_warmup_steps_ratio'));
  set('num_train_epochs', get('trainer.total_epochs'));
  set('max_steps', get('trainer.total_training_steps'));
  set('save_steps', get('trainer.save_freq'));
  Object.assign(out, batchSizes(get, problem), clipping(get), lossMode(get, problem), klLoss(get, problem));
  const entropy = get('actor.entropy_coeff');
  if (entropy !== undefined && entropy !== 0) {
    problem('actor.entropy_coeff', `an entropy bonus is not built; set it to 0 (got ${JSON.stringify(entropy)})`);
  }
  return out;
}

// Prompts (verl) to completions (TRL): n per prompt.
function batchSizes(get: (key: string) => unknown, problem: Problem): Settings {
  const n = get('rollout.n');
  const prompts = get('data.train_batch_size');
  const mini = get('actor.ppo_mini_batch_size');
  const micro = get('actor.ppo_micro_batch_size_per_gpu');
  const out: Settings = {};
  if (n !== undefined) out.num_generations = n;
  if (typeof n !== 'number') {
    if (prompts !== undefined || mini !== undefined) problem('rollout.n', 'batch sizes in prompts need rollout.n');
    return out;
  }
  if (typeof prompts === 'number') out.generation_batch_size = prompts * n;
  if (typeof micro === 'number') out.per_device_train_batch_size = micro;
  if (typeof mini === 'number') {
    const perStep = mini * n;
    const size = typeof micro === 'number' ? micro : perStep;
    if (perStep % size !== 0) {
      problem(
        'actor.ppo_micro_batch_size_per_gpu',
        `ppo_mini_batch_size x rollout.n (${perStep} sequences) must be a multiple of it (${size})`,
      );
    } else {
      out.per_device_train_batch_size = size;
      out.gradient_accumulation_steps = perStep / size;
    }
    if (typeof prompts === 'number' && prompts % mini !== 0) {
      problem('actor.ppo_mini_batch_size', `data.train_batch_size (${prompts}) must be a multiple of it (${mini})`);
    }
  }
  return out;
}

function clipping(get: (key: string) => unknown): Settings {
  const both = get('actor.clip_ratio');
  const low = get('actor.clip_ratio_low') ?? both;
  const high = get('actor.clip_ratio_high') ?? both;
  return { ...(low === undefined ? {} : { epsilon: low }), ...(high === undefined ? {} : { epsilon_high: high }) };
}

// verl's GSPO ignores loss_agg_mode and always averages per sequence, then over sequences (grpo).
function lossMode(get: (key: string) => unknown, problem: Problem): Settings {
  const mode = get('actor.policy_loss.loss_mode') ?? 'vanilla';
  const agg = get('actor.loss_agg_mode');
  if (mode === 'gspo') return { importance_sampling_level: 'sequence', loss_type: 'grpo' };
  if (mode !== 'vanilla') {
    problem('actor.policy_loss.loss_mode', `expected vanilla or gspo, not ${JSON.stringify(mode)}`);
    return {};
  }
  if (agg === undefined) return {};
  const types: Record<string, string> = {
    'token-mean': 'dapo',
    'seq-mean-token-mean': 'grpo',
    'seq-mean-token-sum-norm': 'dr_grpo',
  };
  const lossType = types[String(agg)];
  if (lossType === undefined) {
    problem('actor.loss_agg_mode', `expected one of ${Object.keys(types).join(', ')}, not ${JSON.stringify(agg)}`);
    return {};
  }
  return { importance_sampling_level: 'token', loss_type: lossType };
}

function klLoss(get: (key: string) => unknown, problem: Problem): Settings {
  const use = get('actor.use_kl_loss');
  const coef = get('actor.kl_loss_coef');
  const type = get('actor.kl_loss_type') ?? 'low_var_kl';
  if (use !== true) return use === false ? { beta: 0 } : {};
  if (type !== 'low_var_kl' && type !== 'k3') {
    problem('actor.kl_loss_type', `only low_var_kl (k3, TRL's estimator) is built, not ${JSON.stringify(type)}`);
  }
  return { beta: coef ?? 0.001 };
}

// {a: {b: 1}} and {'a.b': 1} alike: dotted paths.
function flatten(block: Settings, prefix = ''): Settings {
  const out: Settings = {};
  for (const [key, value] of Object.entries(block)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      Object.assign(out, flatten(value as Settings, path));
    else out[path] = value;
  }
  return out;
}
