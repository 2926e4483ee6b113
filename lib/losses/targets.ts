// Labels to targets. Processors label each position with its own token (labels[t] = ids[t] where a
// loss applies), as Hugging Face datasets do; a causal LM's position t predicts token t + 1, so the
// losses read `targets[t] = labels[t + 1]`. This is the one place that shift happens.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

/** labels [R, T] int64 to targets [R, T]: targets[:, t] = labels[:, t + 1]; the last column is ignoreIndex. */
export function targetsFromLabels(labels: Tensor, ignoreIndex = -100): Tensor {
  if (labels.dtype !== 'int64' || labels.ndim !== 2) {
    const got = `${labels.dtype} [${labels.shape}]`;
    throw new TypeError(`Expected an int64 [rows, tokens] tensor for labels but received ${got}`);
  }
  if (!Number.isInteger(ignoreIndex)) {
    throw new TypeError(`Expected an integer for ignoreIndex but received ${ignoreIndex}`);
  }
  const [rows, width] = labels.shape as [number, number];
  return torch.tidy(() => {
    const last = torch.full([rows, 1], ignoreIndex, { dtype: 'int64', device: labels.device });
    return width === 0 ? labels.clone() : torch.cat([labels.narrow(1, 1, width - 1), last], 1);
  });
}
