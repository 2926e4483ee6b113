// Rotary position embeddings, non-interleaved ("rotate_half") as in Hugging Face:
//   inv_freq[j] = 1 / theta^(2j/d), emb = cat(pos ⊗ inv_freq, pos ⊗ inv_freq), x' = x cos + rot(x) sin.
// Text: 1-D positions. Qwen2-VL text: M-RoPE, three position axes (t, h, w) mixed by section.
// Qwen vision: 2-D (row, col) positions, half the frequencies each.
import * as torch from '../torch/index.js';
import type { Tensor } from '../torch/index.js';

/** 1 / theta^(arange(0, dim, 2) / dim) in float32, with the reference's float32 operation order. */
export function inverseFrequencies(dim: number, theta: number): Tensor {
  return torch.tidy(() => torch.pow(theta, torch.arange(0, dim, 2, { dtype: 'int64' }).float().div(dim)).reciprocal());
}

/** positions [...] (integer) to angles [..., dim/2]: positions ⊗ invFreq in float32. */
export function rotaryAngles(positions: Tensor, invFreq: Tensor): Tensor {
  return torch.tidy(() => positions.float().unsqueeze(-1).mul(invFreq));
}

export interface CosSin {
  cos: Tensor;
  sin: Tensor;
}

/** angles [..., d/2] to cos/sin [..., d] of cat(angles, angles), cast to `dtype`. */
export function cosSin(angles: Tensor, dtype: Tensor['dtype'] = 'float32'): CosSin {
  return torch.tidy(() => {
    const emb = torch.cat([angles, angles], -1);
    const cast = (t: Tensor): Tensor => (t.dtype === dtype ? t : t.to(dtype));
    return { cos: cast(emb.cos()), sin: cast(emb.sin()) };
  });
}

/**
 * M-RoPE: angles [3, B, S, d/2] for the (t, h, w) axes to one table [B, S, d/2] whose frequency
 * block i comes from axis i % 3, blocks sized by `section` (e.g. [16, 24, 24]).
 */
export function mropeAngles(angles: Tensor, section: readonly number[]): Tensor {
  return torch.tidy(() => {
    const parts = angles.split(section, -1);
    return torch.cat(
      parts.map((part, i) => part.select(0, i % 3)),
      -1,
    );
  });
}

export function rotateHalf(x: Tensor): Tensor {
  return torch.tidy(() => {
    const [x1, x2] = x.chunk(2, -1) as [Tensor, Tensor];
    return torch.cat([x2.neg(), x1], -1);
  });
}

/** x cos + rotate_half(x) sin; cos/sin broadcast against x. */
export function applyRotary(x: Tensor, { cos, sin }: CosSin): Tensor {
  return torch.tidy(() => x.mul(cos).add(rotateHalf(x).mul(sin)));
}
