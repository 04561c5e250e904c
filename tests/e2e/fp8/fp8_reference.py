"""A NumPy implementation of the Llama forward pass with FP8 (E4M3) linear layers, as
docs/architecture.md ("FP8 weights") specifies it and the CPU backend computes it:

- each FP8 weight is its E4M3 code's value times its scale (per tensor, per output
  channel, or per 128 x 128 block);
- each FP8 layer's input is quantized to E4M3 and back before the matmul: per token
  (scale = amax / 448 in float32, 1 where that is 0), per token and group of columns,
  or with the checkpoint's static input_scale (the largest of q, k and v's, which share
  their input; gate and up likewise); values beyond ±448 saturate;
- `--quantization fp8` quantizes a 16-bit checkpoint's linear layers per output channel
  the same way, inputs per token.

E4M3 rounding here is its own (nearest of the 127 finite magnitudes, ties to the even
code), checked against torch's by test_fp8. Reads safetensors by hand: only NumPy.
"""
import json
import math
import os
import struct

import numpy as np

FP8_MAX = np.float32(448.0)


def e4m3_table():
    """The value of each of the 256 codes (0x7f and 0xff are NaN)."""
    out = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp, man = (code >> 3) & 0xF, code & 0x7
        if exp == 0xF and man == 0x7:
            out[code] = np.nan
        elif exp == 0:
            out[code] = sign * man * 2.0 ** -9
        else:
            out[code] = sign * (1 + man / 8) * 2.0 ** (exp - 7)
    return out


TABLE = e4m3_table()
POSITIVE = TABLE[:127].astype(np.float64)  # codes 0..126, increasing


def to_e4m3(x):
    """E4M3 codes of float32 values: nearest, ties to the even code, saturating at 448."""
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x).astype(np.float64)
    hi = np.clip(np.searchsorted(POSITIVE, a), 1, 126)
    lo = hi - 1
    dlo, dhi = a - POSITIVE[lo], POSITIVE[hi] - a
    pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    pick = np.where(a >= POSITIVE[126], 126, pick)
    codes = pick.astype(np.uint8) | np.where(np.signbit(x), 0x80, 0).astype(np.uint8)
    return np.where(np.isnan(x), np.uint8(0x7F), codes).astype(np.uint8)


def quant_dequant(x, group=0, static_scale=0.0):
    """x [rows, cols] float32 as an FP8 GEMM reads it (see the module docstring)."""
    x = np.asarray(x, dtype=np.float32)
    rows, cols = x.shape
    g = cols if group <= 0 or group >= cols else group
    out = np.empty_like(x)
    for lo in range(0, cols, g):
        blk = x[:, lo:lo + g]
        if static_scale > 0:
            s = np.full((rows, 1), np.float32(static_scale), dtype=np.float32)
        else:
            amax = np.abs(blk).max(axis=1, keepdims=True).astype(np.float32)
            s = (amax / FP8_MAX).astype(np.float32)
            s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
        out[:, lo:lo + g] = TABLE[to_e4m3(blk / s)] * s
    return out


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = np.frombuffer(data[lo:hi], dtype=np.uint8)
        shape = t["shape"]
        dt = t["dtype"]
        if dt == "BF16":
            v = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt == "F32":
            v = raw.view(np.float32)
        elif dt == "F16":
            v = raw.view(np.float16).astype(np.float32)
        elif dt == "F8_E4M3":
            v = TABLE[raw]
        else:
            raise ValueError(f"{name}: dtype {dt}")
        out[name] = (dt, v.reshape(shape) if shape else v.reshape(()))
    return out


class Model:
    """The checkpoint in DIR, as the CPU backend holds it; on_load: --quantization fp8."""

    def __init__(self, path, on_load=False):
        with open(os.path.join(path, "config.json")) as f:
            self.c = json.load(f)
        self.t = read_safetensors(os.path.join(path, "model.safetensors"))
        q = self.c.get("quantization_config") or {}
        self.block = q.get("weight_block_size")
        self.inputs = "none"
        if q.get("quant_method") == "fp8":
            self.inputs = "group" if self.block else (
                "static" if q.get("activation_scheme") == "static" else "token")
        elif q.get("quant_method") == "compressed-tensors":
            a = next(iter(q["config_groups"].values())).get("input_activations")
            self.inputs = "none" if a is None else ("token" if a["dynamic"] else "static")
        self.on_load = on_load
        if on_load:
            self.inputs = "token"

    def weight(self, name):
        return self.t[name][1].astype(np.float32)

    def linear(self, base):
        """(weight [out, in] float32, input mode, static scale) of linear layer `base`."""
        dt, w = self.t[base + "weight"]
        w = w.astype(np.float32)
        if dt != "F8_E4M3":
            if self.on_load:
                s = (np.abs(w).max(axis=1, keepdims=True) / FP8_MAX).astype(np.float32)
                s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
                return TABLE[to_e4m3(w / s)] * s, "token", 0.0
            return w, "none", 0.0
        if self.block:
            s = self.t[base + "weight_scale_inv"][1].astype(np.float32)
            bn, bk = self.block
            full = np.repeat(np.repeat(s, bn, axis=0), bk, axis=1)[: w.shape[0], : w.shape[1]]
            w = w * full
        else:
            s = self.t[base + "weight_scale"][1].astype(np.float32)
            w = w * (s.reshape(-1, 1) if s.size > 1 else s.reshape(()))
        scale = 0.0
        if self.inputs == "static":
            scale = float(self.t[base + "input_scale"][1].reshape(-1)[0])
        return w, self.inputs, scale

    def matmul(self, x, bases, quantize_inputs):
        """x @ W.T over the fused parts `bases`, their shared input quantized first."""
        parts = [self.linear(b) for b in bases]
        mode = parts[0][1]
        assert all(p[1] == mode for p in parts)
        if quantize_inputs and mode != "none":
            group = self.block[1] if mode == "group" else 0
            x = quant_dequant(x, group, max(p[2] for p in parts))
        w = np.concatenate([p[0] for p in parts], axis=0)
        return (x.astype(np.float32) @ w.T).astype(np.float32)

    def logprobs(self, ids, quantize_inputs=True):
        """log-softmax [len(ids), vocab] (float64) of each position's next token."""
        c = self.c
        eps = np.float32(c["rms_norm_eps"])
        nq, nkv = c["num_attention_heads"], c["num_key_value_heads"]
        d = c.get("head_dim", c["hidden_size"] // nq)
        n = len(ids)

        def rms(x, w):
            v = np.mean(x.astype(np.float32) ** 2, axis=-1, keepdims=True)
            return (x / np.sqrt(v + eps)).astype(np.float32) * w

        theta = c.get("rope_theta", 10000.0)
        inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
        ang = np.arange(n)[:, None] * inv[None, :]
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

        def rope(x):  # [n, heads, d], halves rotated
            x1, x2 = x[..., : d // 2], x[..., d // 2:]
            cc, ss = cos[:, None, :], sin[:, None, :]
            return np.concatenate([x1 * cc - x2 * ss, x2 * cc + x1 * ss], axis=-1)

        h = self.weight("model.embed_tokens.weight")[np.asarray(ids)]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = rms(h, self.weight(p + "input_layernorm.weight"))
            qkv = self.matmul(x, [p + "self_attn.q_proj.", p + "self_attn.k_proj.",
                                  p + "self_attn.v_proj."], quantize_inputs)
            q = rope(qkv[:, : nq * d].reshape(n, nq, d))
            k = rope(qkv[:, nq * d: (nq + nkv) * d].reshape(n, nkv, d))
            v = qkv[:, (nq + nkv) * d:].reshape(n, nkv, d)
            attn = np.empty((n, nq, d), dtype=np.float32)
            for head in range(nq):
                kv = head // (nq // nkv)
                sc = (q[:, head] @ k[:, kv].T) / np.float32(math.sqrt(d)) + mask
                pr = np.exp(sc - sc.max(axis=1, keepdims=True))
                pr /= pr.sum(axis=1, keepdims=True)
                attn[:, head] = pr @ v[:, kv]
            h = h + self.matmul(attn.reshape(n, nq * d), [p + "self_attn.o_proj."], quantize_inputs)
            x = rms(h, self.weight(p + "post_attention_layernorm.weight"))
            gu = self.matmul(x, [p + "mlp.gate_proj.", p + "mlp.up_proj."], quantize_inputs)
            inter = gu.shape[1] // 2
            g, u = gu[:, :inter], gu[:, inter:]
            act = (g / (1 + np.exp(-g)) * u).astype(np.float32)
            h = h + self.matmul(act, [p + "mlp.down_proj."], quantize_inputs)
        x = rms(h, self.weight("model.norm.weight"))
        head = "lm_head.weight" if "lm_head.weight" in self.t else "model.embed_tokens.weight"
        logits = (x @ self.weight(head).T).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
