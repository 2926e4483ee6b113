"""Qwen2-VL in plain PyTorch eager, as transformers v4.47.1 `modeling_qwen2_vl.py` computes it.

The Python peer of the vlalign Qwen2-VL model (bench/model-forward, issue #3). transformers is not
needed (nor installed here): this file re-states the architecture with torch only, following the
reference's operation order so that float32 results agree with it to ~1e-6
(`attn_implementation="eager"`, CPU). Checked against the golden fixture
/work/shared/fixtures/golden/qwen2_vl by `bench/peers/model_forward.py --verify`.

    import qwen2_vl_eager as q
    model = q.load("/path/to/checkpoint_dir")          # config.json + model.safetensors
    logits = model(input_ids, attention_mask, pixel_values, image_grid_thw)   # [B, L, V] float32

    model = q.Qwen2VL(q.Qwen2VLConfig.from_dict(cfg_dict))   # random init, normal(0, 0.02)

Parameter names are the legacy hub layout (`visual.*`, `model.*`, `lm_head.weight`); `load` also
accepts the transformers >= 4.52 layout (`model.visual.*`, `model.language_model.*`) and skips
`*.inv_freq`. With `tie_word_embeddings` the head is the embedding matrix (a stored `lm_head.weight`
is then ignored, as transformers does).

What the reference does, step by step (v4.47.1, eager):
- inputs_embeds = embed_tokens(ids); if pixel_values: image_embeds = visual(pixel_values, grid_thw),
  and rows where ids == image_token_id are replaced in order (masked_scatter, batch-major).
- position_ids [3, B, L] = get_rope_index(ids, grid_thw, attention_mask) (t, h, w positions).
- text decoder: additive causal + padding mask filled with finfo(float32).min; per layer
  h += o_proj(attn(input_layernorm(h))); h += down(silu(gate(x)) * up(x)) on post_attention_layernorm(h);
  final RMSNorm; logits = lm_head(h) (no scaling), cast to float32.
- attention: q/k/v with bias, o_proj without; M-RoPE on q, k; GQA via repeat_kv (kv head g serves
  q heads g*r .. g*r+r-1); scores = q k^T / sqrt(head_dim) + mask; softmax in float32; @ v.
- vision tower: Conv3d patch embed (no bias) -> depth x {x += attn(LN1 x); x += fc2(quick_gelu(fc1(LN2 x)))}
  with 2-D rotary on q, k (in float32) and block-diagonal attention per image frame (cu_seqlens,
  additive mask of finfo.min) -> merger: LN (eps 1e-6) per patch, view 4 consecutive rows as one
  [4W] row, Linear -> exact GELU -> Linear to the LLM width.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------------
# safetensors (the `safetensors` package is not installed): header = u64 LE length + JSON, then data
# --------------------------------------------------------------------------------------------------

_NP_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path):
    """Returns ({name: torch.Tensor}, metadata). Copies the data (tensors own their memory)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dtype, shape = info["dtype"], info["shape"]
        start, end = info["data_offsets"]
        raw = data[base + start:base + end]
        if dtype == "BF16":  # bfloat16 = the high 16 bits of a float32
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            t = torch.from_numpy(u16.view(np.float32).copy()).to(torch.bfloat16)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP_DTYPES[dtype]).newbyteorder("<"))
            t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
        out[name] = t.reshape(shape)
    return out, meta


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------

class Qwen2VLConfig:
    """The fields the model uses, with Qwen2VLConfig / Qwen2VLVisionConfig (v4.47.1) class defaults."""

    TEXT_DEFAULTS = dict(
        vocab_size=152064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, hidden_act="silu",
        max_position_embeddings=32768, rms_norm_eps=1e-05, tie_word_embeddings=False,
        rope_theta=1000000.0, attention_dropout=0.0, rope_scaling=None,
        vision_start_token_id=151652, vision_end_token_id=151653, vision_token_id=151654,
        image_token_id=151655, video_token_id=151656, bos_token_id=151643, eos_token_id=151645,
        initializer_range=0.02,
    )
    VISION_DEFAULTS = dict(
        depth=32, embed_dim=1280, hidden_size=3584, hidden_act="quick_gelu", mlp_ratio=4,
        num_heads=16, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        text = dict(cls.TEXT_DEFAULTS)
        # Newer saves nest the text fields under text_config; flat (hub) files have them at top level.
        nested = d.get("text_config") or {}
        for k in text:
            if k in nested:
                text[k] = nested[k]
            if k in d:
                text[k] = d[k]
        rope = d.get("rope_scaling") or nested.get("rope_scaling") or nested.get("rope_parameters") \
            or d.get("rope_parameters")
        if isinstance(rope, dict) and "rope_theta" in rope:
            text["rope_theta"] = rope["rope_theta"]
        vis = dict(cls.VISION_DEFAULTS)
        vd = d.get("vision_config") or {}
        for k in vis:
            if k in vd:
                vis[k] = vd[k]
        if "in_chans" in vd:
            vis["in_channels"] = vd["in_chans"]
        cfg = cls(**text)
        cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
        # M-RoPE when mrope_section is present, whatever "type" says ("mrope" in hub files,
        # rewritten to "default" by transformers 4.47+).
        section = rope.get("mrope_section") if isinstance(rope, dict) else None
        cfg.mrope_section = list(section) if section else None
        if cfg.mrope_section is not None:
            assert sum(cfg.mrope_section) * 2 == cfg.head_dim, (cfg.mrope_section, cfg.head_dim)
        cfg.vision = cls(**vis)
        cfg.vision.head_dim = cfg.vision.embed_dim // cfg.vision.num_heads
        cfg.raw = d
        return cfg


# --------------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------------

def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


# --------------------------------------------------------------------------------------------------
# vision tower
# --------------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, vc):
        super().__init__()
        self.vc = vc
        k = (vc.temporal_patch_size, vc.patch_size, vc.patch_size)
        self.proj = nn.Conv3d(vc.in_channels, vc.embed_dim, kernel_size=k, stride=k, bias=False)

    def forward(self, x):
        vc = self.vc
        x = x.view(-1, vc.in_channels, vc.temporal_patch_size, vc.patch_size, vc.patch_size)
        return self.proj(x.to(self.proj.weight.dtype)).view(-1, vc.embed_dim)


class VisionAttention(nn.Module):
    def __init__(self, vc):
        super().__init__()
        self.num_heads = vc.num_heads
        self.head_dim = vc.head_dim
        self.qkv = nn.Linear(vc.embed_dim, 3 * vc.embed_dim, bias=True)
        self.proj = nn.Linear(vc.embed_dim, vc.embed_dim)

    @staticmethod
    def _rope(t, cos, sin):  # t [1, N, heads, hd]; rotation in float32
        dtype = t.dtype
        t = t.float()
        return ((t * cos) + (rotate_half(t) * sin)).to(dtype)

    def forward(self, x, cu_seqlens, rotary_pos_emb):
        n = x.shape[0]
        q, k, v = self.qkv(x).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        # rotary_pos_emb [N, hd/2] -> cos/sin duplicated to hd, broadcast over heads
        cos = rotary_pos_emb.cos().unsqueeze(1).repeat(1, 1, 2).unsqueeze(0).float()
        sin = rotary_pos_emb.sin().unsqueeze(1).repeat(1, 1, 2).unsqueeze(0).float()
        q = self._rope(q.unsqueeze(0), cos, sin).squeeze(0)
        k = self._rope(k.unsqueeze(0), cos, sin).squeeze(0)
        mask = torch.full([1, n, n], torch.finfo(q.dtype).min, dtype=q.dtype)
        bounds = cu_seqlens.tolist()
        for i in range(1, len(bounds)):
            mask[..., bounds[i - 1]:bounds[i], bounds[i - 1]:bounds[i]] = 0
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [heads, N, hd]
        w = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(self.head_dim)
        w = w + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(0, 1).reshape(n, -1)
        return self.proj(out)


class VisionMlp(nn.Module):
    def __init__(self, vc):
        super().__init__()
        assert vc.hidden_act == "quick_gelu", vc.hidden_act
        hidden = int(vc.embed_dim * vc.mlp_ratio)
        self.fc1 = nn.Linear(vc.embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, vc.embed_dim)

    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))


class VisionBlock(nn.Module):
    def __init__(self, vc):
        super().__init__()
        self.norm1 = nn.LayerNorm(vc.embed_dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(vc.embed_dim, eps=1e-6)
        self.attn = VisionAttention(vc)
        self.mlp = VisionMlp(vc)

    def forward(self, x, cu_seqlens, rotary_pos_emb):
        x = x + self.attn(self.norm1(x), cu_seqlens, rotary_pos_emb)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    def __init__(self, vc):
        super().__init__()
        self.hidden = vc.embed_dim * vc.spatial_merge_size ** 2
        self.ln_q = nn.LayerNorm(vc.embed_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.hidden, self.hidden), nn.GELU(),
                                 nn.Linear(self.hidden, vc.hidden_size))

    def forward(self, x):
        return self.mlp(self.ln_q(x).view(-1, self.hidden))


class VisionTransformer(nn.Module):
    def __init__(self, vc):
        super().__init__()
        self.vc = vc
        self.patch_embed = PatchEmbed(vc)
        d = vc.head_dim // 2  # VisionRotaryEmbedding(head_dim // 2): d/2 frequencies per axis
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.blocks = nn.ModuleList([VisionBlock(vc) for _ in range(vc.depth)])
        self.merger = PatchMerger(vc)

    def rot_pos_emb(self, grid_thw):
        """[N, head_dim/2]: per patch row cat(hpos * inv_freq, wpos * inv_freq), merge-block order."""
        m = self.vc.spatial_merge_size
        pos = []
        for t, h, w in grid_thw.tolist():
            hpos = torch.arange(h).unsqueeze(1).expand(-1, w)
            hpos = hpos.reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
            wpos = torch.arange(w).unsqueeze(0).expand(h, -1)
            wpos = wpos.reshape(h // m, m, w // m, m).permute(0, 2, 1, 3).flatten()
            pos.append(torch.stack([hpos, wpos], dim=-1).repeat(t, 1))
        pos = torch.cat(pos, dim=0)
        max_grid = int(grid_thw[:, 1:].max())
        table = torch.outer(torch.arange(max_grid, dtype=self.inv_freq.dtype), self.inv_freq)
        return table[pos].flatten(1)

    @staticmethod
    def cu_seqlens(grid_thw):
        cu = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0]).cumsum(0, dtype=torch.int32)
        return F.pad(cu, (1, 0), value=0)

    def forward(self, pixel_values, grid_thw, aux=None):
        x = self.patch_embed(pixel_values)
        if aux is not None:
            aux["vision_patch_embeds"] = x.detach().clone()
        rope = self.rot_pos_emb(grid_thw)
        cu = self.cu_seqlens(grid_thw)
        if aux is not None:
            aux["vision_cu_seqlens"] = cu.to(torch.int64)
        for blk in self.blocks:
            x = blk(x, cu, rope)
        if aux is not None:
            aux["vision_pre_merger"] = x.detach().clone()
        return self.merger(x)


# --------------------------------------------------------------------------------------------------
# text decoder (Qwen2 with M-RoPE)
# --------------------------------------------------------------------------------------------------

class TextAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, Hkv, hd, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
        self.q_proj = nn.Linear(D, H * hd, bias=True)
        self.k_proj = nn.Linear(D, Hkv * hd, bias=True)
        self.v_proj = nn.Linear(D, Hkv * hd, bias=True)
        self.o_proj = nn.Linear(H * hd, D, bias=False)

    def forward(self, x, cos, sin, mask):
        cfg = self.cfg
        B, L, _ = x.shape
        hd = cfg.head_dim
        q = self.q_proj(x).view(B, L, -1, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, L, -1, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, L, -1, hd).transpose(1, 2)
        # cos/sin [B, L, hd] already section-mixed; broadcast over heads
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        rep = cfg.num_attention_heads // cfg.num_key_value_heads
        if rep > 1:  # repeat_kv: [B, Hkv, L, hd] -> [B, Hkv*rep, L, hd], kv head g -> q heads g*rep..
            k = k[:, :, None].expand(B, k.shape[1], rep, L, hd).reshape(B, -1, L, hd)
            v = v[:, :, None].expand(B, v.shape[1], rep, L, hd).reshape(B, -1, L, hd)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd)
        w = w + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous().view(B, L, -1)
        return self.o_proj(out)


class TextMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.hidden_act == "silu", cfg.hidden_act
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = TextAttention(cfg)
        self.mlp = TextMLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class TextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        hd = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, position_ids, dtype):
        """position_ids [3, B, L] -> section-mixed cos, sin [B, 1, L, hd] (fp32 math, cast to dtype)."""
        freqs = position_ids[..., None].float() * self.inv_freq  # [3, B, L, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        sec = self.cfg.mrope_section
        if sec is None:  # plain 1-D RoPE: all three rows are equal for text anyway
            return cos[0].unsqueeze(1), sin[0].unsqueeze(1)
        sec = sec * 2
        cos = torch.cat([m[i % 3] for i, m in enumerate(cos.split(sec, dim=-1))], dim=-1).unsqueeze(1)
        sin = torch.cat([m[i % 3] for i, m in enumerate(sin.split(sec, dim=-1))], dim=-1).unsqueeze(1)
        return cos, sin

    @staticmethod
    def causal_mask(attention_mask, L, dtype):
        """Additive [B, 1, L, L] mask as transformers' _update_causal_mask builds it for eager."""
        min_dtype = torch.finfo(dtype).min
        B = attention_mask.shape[0]
        mask = torch.triu(torch.full((L, L), min_dtype, dtype=dtype), diagonal=1)
        mask = mask[None, None].expand(B, 1, L, L).clone()
        padding = (mask + attention_mask[:, None, None, :].to(dtype)) == 0
        return mask.masked_fill(padding, min_dtype)

    def forward(self, inputs_embeds, position_ids, attention_mask, hidden_states=None):
        B, L, _ = inputs_embeds.shape
        mask = self.causal_mask(attention_mask, L, inputs_embeds.dtype)
        cos, sin = self.rotary(position_ids, inputs_embeds.dtype)
        h = inputs_embeds
        for layer in self.layers:
            if hidden_states is not None:
                hidden_states.append(h)
            h = layer(h, cos, sin, mask)
        h = self.norm(h)
        if hidden_states is not None:
            hidden_states.append(h)
        return h


# --------------------------------------------------------------------------------------------------
# the whole model
# --------------------------------------------------------------------------------------------------

def get_rope_index(cfg, input_ids, image_grid_thw=None, attention_mask=None):
    """M-RoPE position ids [3, B, L] and rope_deltas [B, 1] (images only; no video)."""
    m = cfg.vision.spatial_merge_size
    B, L = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if image_grid_thw is None:
        pos = attention_mask.long().cumsum(-1) - 1
        pos.masked_fill_(attention_mask == 0, 1)
        pos = pos.unsqueeze(0).expand(3, -1, -1)
        deltas = pos.max(0)[0].max(-1, keepdim=True)[0] + 1 - attention_mask.shape[-1]
        return pos, deltas
    position_ids = torch.ones(3, B, L, dtype=input_ids.dtype)  # padded slots keep 1
    grids = image_grid_thw.tolist()
    image_index = 0
    deltas = []
    for b in range(B):
        keep = attention_mask[b] == 1
        tokens = input_ids[b][keep].tolist()
        # images are counted as <|vision_start|> followed by <|image_pad|>
        n_images = sum(1 for i in range(len(tokens) - 1)
                       if tokens[i] == cfg.vision_start_token_id and tokens[i + 1] == cfg.image_token_id)
        parts = []
        st = 0
        for _ in range(n_images):
            ed = tokens.index(cfg.image_token_id, st)
            t, h, w = grids[image_index]
            image_index += 1
            gt, gh, gw = t, h // m, w // m
            text_len = ed - st
            st_idx = int(parts[-1].max()) + 1 if parts else 0
            parts.append(torch.arange(text_len).view(1, -1).expand(3, -1) + st_idx)
            t_idx = torch.arange(gt).view(-1, 1).expand(-1, gh * gw).flatten()
            h_idx = torch.arange(gh).view(1, -1, 1).expand(gt, -1, gw).flatten()
            w_idx = torch.arange(gw).view(1, 1, -1).expand(gt, gh, -1).flatten()
            parts.append(torch.stack([t_idx, h_idx, w_idx]) + text_len + st_idx)
            st = ed + gt * gh * gw
        if st < len(tokens):
            st_idx = int(parts[-1].max()) + 1 if parts else 0
            parts.append(torch.arange(len(tokens) - st).view(1, -1).expand(3, -1) + st_idx)
        llm = torch.cat(parts, dim=1).reshape(3, -1)
        position_ids[:, b, keep] = llm.to(position_ids.dtype)
        deltas.append(int(llm.max()) + 1 - L)
    return position_ids, torch.tensor(deltas, dtype=torch.int64).unsqueeze(1)


class Qwen2VL(nn.Module):
    """Qwen2VLForConditionalGeneration (v4.47.1), eager attention, no KV cache."""

    def __init__(self, cfg, init=True):
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTransformer(cfg.vision)
        self.model = TextModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if init:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Qwen2VLPreTrainedModel._init_weights: Linear/Conv3d/Embedding weights ~ N(0, std), biases 0;
        norms ones (weight) / zeros (bias)."""
        std = self.cfg.initializer_range
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Conv3d, nn.Embedding)):
                mod.weight.normal_(mean=0.0, std=std)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
            elif isinstance(mod, (nn.LayerNorm, RMSNorm)):
                mod.weight.fill_(1.0)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()

    def forward(self, input_ids, attention_mask=None, pixel_values=None, image_grid_thw=None, aux=None):
        """Logits [B, L, V] float32. `aux` (a dict) receives position_ids, rope_deltas, hidden_states
        and the vision intermediates, for checking."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.model.embed_tokens(input_ids)
        if pixel_values is not None:
            image_embeds = self.visual(pixel_values.to(self.visual.patch_embed.proj.weight.dtype),
                                       image_grid_thw, aux)
            if aux is not None:
                aux["image_embeds"] = image_embeds.detach().clone()
            n_tokens = int((input_ids == self.cfg.image_token_id).sum())
            if n_tokens != image_embeds.shape[0]:
                raise ValueError(f"image tokens {n_tokens} != image features {image_embeds.shape[0]}")
            image_mask = (input_ids == self.cfg.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
        position_ids, deltas = get_rope_index(
            self.cfg, input_ids, image_grid_thw if pixel_values is not None else None, attention_mask)
        hs = [] if aux is not None else None
        h = self.model(embeds, position_ids, attention_mask, hs)
        if aux is not None:
            aux["position_ids"] = position_ids
            aux["rope_deltas"] = deltas
            aux["hidden_states"] = torch.stack([x.detach() for x in hs])
        return self.lm_head(h).float()


def map_checkpoint_name(name):
    """transformers >= 4.52 names -> legacy names; None for tensors to skip."""
    if name.endswith("inv_freq"):
        return None
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def load(directory, dtype=torch.float32):
    """Loads config.json + model.safetensors (or sharded model-*.safetensors with an index)."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = Qwen2VLConfig.from_dict(json.load(f))
    files = []
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for fn in files:
        tensors, _ = read_safetensors(os.path.join(directory, fn))
        for k, v in tensors.items():
            k2 = map_checkpoint_name(k)
            if k2 is not None:
                state[k2] = v.to(dtype) if v.is_floating_point() else v
    model = Qwen2VL(cfg, init=False)
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    model.to(dtype)
    model.eval()
    return model
