"""Makes a small random Llama checkpoint whose linear layers are FP8 (E4M3), quantized
with torch, in one of the published layouts, so that the loader and the CPU reference of
W8A8 can be checked against a NumPy implementation (fp8_reference.py):

  channel   compressed-tensors, weight_scale per output channel (BF16), inputs dynamic
            per token: as llm-compressor's FP8-dynamic exports
  static    compressed-tensors, weight_scale per tensor (F32) and a static input_scale per
            tensor: as Llama-3.1-8B-Instruct-FP8
  block     fp8, weight_scale_inv per 128 x 128 block (F32), inputs dynamic per token and
            group of 128 columns: as Qwen3 FP8 ships
  bf16      the 16-bit original (for --quantization fp8)

Also writes e4m3_probe.json: float32 values and the E4M3 codes torch rounds them to.

    python make_checkpoint.py --layout block --tokenizer DIR --out DIR
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file

FP8_MAX = 448.0
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 4096,  # the tokenizer's (sluice-tiny-code)
    "hidden_size": 256,
    "intermediate_size": 320,  # not a multiple of 128: blocks and groups at the edge are partial
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "bos_token_id": 0,
    "eos_token_id": 0,
    "torch_dtype": "bfloat16",
}
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# Static input scales: roughly each input's largest magnitude over 448, varied per tensor
# so that q, k and v (which share one input) differ.
INPUT_AMAX = {"q_proj": 4.0, "k_proj": 4.0, "v_proj": 4.0, "o_proj": 1.5, "gate_proj": 4.0,
              "up_proj": 4.0, "down_proj": 1.0}


def bf16_weights(gen):
    c = CONFIG
    h, inter, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    shapes = {"self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h),
              "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, q),
              "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h),
              "mlp.down_proj": (h, inter)}
    t = {"model.embed_tokens.weight": torch.randn(c["vocab_size"], h, generator=gen),
         "model.norm.weight": 0.9 + 0.2 * torch.rand(h, generator=gen),
         "lm_head.weight": torch.randn(c["vocab_size"], h, generator=gen) / math.sqrt(h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 0.9 + 0.2 * torch.rand(h, generator=gen)
        t[p + "post_attention_layernorm.weight"] = 0.9 + 0.2 * torch.rand(h, generator=gen)
        for name, (rows, cols) in shapes.items():
            # Per-row spread so that per-channel and per-block scales differ from per-tensor.
            spread = 0.5 + torch.rand(rows, 1, generator=gen)
            t[p + name + ".weight"] = torch.randn(rows, cols, generator=gen) * spread / math.sqrt(cols)
    return {k: v.to(torch.bfloat16) for k, v in t.items()}


def to_fp8(x):
    return x.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


def quantize(tensors, layout, gen):
    out = {}
    for name, w in tensors.items():
        base = name[: -len("weight")]
        if not any(base.endswith(l + ".") for l in LINEARS):
            out[name] = w
            continue
        w = w.float()
        if layout == "channel":
            s = (w.abs().amax(dim=1, keepdim=True) / FP8_MAX).to(torch.bfloat16)
            out[name] = to_fp8(w / s.float())
            out[base + "weight_scale"] = s
        elif layout == "static":
            s = (w.abs().amax() / FP8_MAX).reshape(1)
            out[name] = to_fp8(w / s)
            out[base + "weight_scale"] = s
            amax = INPUT_AMAX[base.split(".")[-2]] * (0.8 + 0.4 * torch.rand(1, generator=gen))
            out[base + "input_scale"] = (amax / FP8_MAX).float()
        elif layout == "block":
            rows, cols = w.shape
            br, bc = math.ceil(rows / 128), math.ceil(cols / 128)
            s = torch.empty(br, bc)
            q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
            for i in range(br):
                for j in range(bc):
                    blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
                    s[i, j] = blk.abs().amax() / FP8_MAX
                    q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = to_fp8(blk / s[i, j])
            out[name] = q
            out[base + "weight_scale_inv"] = s
        else:
            raise ValueError(layout)
    return out


def compressed_tensors(weights, inputs):
    """A compressed-tensors FP8 config: one group over the Linear layers, lm_head left out."""
    fp8 = {"num_bits": 8, "type": "float", "symmetric": True}
    return {
        "quant_method": "compressed-tensors", "format": "float-quantized",
        "quantization_status": "compressed", "ignore": ["lm_head"],
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {**fp8, "strategy": weights, "dynamic": False},
            "input_activations": {**fp8, **inputs}}}}


QUANT_CONFIG = {
    "channel": compressed_tensors("channel", {"strategy": "token", "dynamic": True}),
    "static": compressed_tensors("tensor", {"strategy": "tensor", "dynamic": False}),
    "block": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
              "weight_block_size": [128, 128]},
}


def probe(gen):
    """Float32 values across E4M3's range, exact ties among them, and torch's codes."""
    mags = torch.exp2(torch.empty(4000).uniform_(-12, 9.5, generator=gen))
    values = torch.cat([mags, -mags[:1000]])
    # Midpoints between neighbouring codes: ties, which round to the even code.
    codes = torch.arange(0, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    ties = (codes[:-1] + codes[1:]) / 2
    values = torch.cat([values, ties, -ties, torch.tensor([0.0, 448.0, 460.0, 1e-4])]).float()
    got = values.to(torch.float8_e4m3fn).view(torch.uint8)
    return {"values": values.tolist(), "codes": got.tolist()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", required=True, choices=["channel", "static", "block", "bf16"])
    ap.add_argument("--tokenizer", required=True, help="directory holding tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    tensors = bf16_weights(gen)
    config = dict(CONFIG)
    if a.layout != "bf16":
        tensors = quantize(tensors, a.layout, gen)
        config["quantization_config"] = QUANT_CONFIG[a.layout]
    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer, name)
        if os.path.exists(src):
            shutil.copy(src, a.out)
    with open(os.path.join(a.out, "e4m3_probe.json"), "w") as f:
        json.dump(probe(gen), f)


if __name__ == "__main__":
    main()
