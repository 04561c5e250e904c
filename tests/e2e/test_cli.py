"""`sluice generate` end to end: parity with transformers through the engine, and clear
errors for bad input."""
import json
import os
import pathlib
import subprocess

import pytest


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def test_single_prompt_json_matches_golden(sluice_bin, golden):
    case = golden["cases"][0]
    p = run([sluice_bin, "generate", "--prompt", case["prompt"], "--max-tokens", "32",
             "--ignore-eos", "--json"])
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["prompt_ids"] == case["prompt_ids"]
    assert out["output_ids"] == case["greedy_ids"]
    assert out["text"] == case["greedy_text"]


def test_prompts_file_under_preemption_matches_golden(sluice_bin, golden, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(
        json.dumps({"prompt": c["prompt"], "max_tokens": 32, "temperature": 0,
                    "ignore_eos": True, "cache_salt": "t1"}) + "\n"
        for c in golden["cases"]))
    # 12 blocks of 8 tokens cannot hold the 8 requests at once: preemption must happen.
    p = run([sluice_bin, "generate", "--prompts-file", str(prompts), "--num-kv-blocks", "12",
             "--block-size", "8", "--max-num-seqs", "8", "--max-num-batched-tokens", "64",
             "--json"])
    assert p.returncode == 0, p.stderr
    lines = [json.loads(l) for l in p.stdout.strip().splitlines()]
    assert len(lines) == len(golden["cases"])
    for line, case in zip(lines, golden["cases"]):
        assert line["prompt_ids"] == case["prompt_ids"]
        assert line["output_ids"] == case["greedy_ids"], case["prompt"]
        assert line["finish_reason"] == "length"
        assert "cached_prompt_tokens" in line


def test_seeded_sampling_is_reproducible(sluice_bin):
    args = [sluice_bin, "generate", "--prompt", "import os\n", "--max-tokens", "24",
            "--temperature", "0.9", "--top-p", "0.95", "--top-k", "50", "--seed", "11",
            "--ignore-eos", "--json"]
    a, b = run(args), run(args)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout)["output_ids"] == json.loads(b.stdout)["output_ids"]
    c = run(args[:-4] + ["--seed", "12", "--ignore-eos", "--json"])
    assert json.loads(c.stdout)["output_ids"] != json.loads(a.stdout)["output_ids"]


def test_missing_model_dir_is_a_clear_error(sluice_bin, tmp_path):
    p = run([sluice_bin, "generate", "--model", str(tmp_path / "nope"), "--prompt", "x"])
    assert p.returncode == 2
    assert "nope" in p.stderr


def test_bad_prompts_file_line_is_named(sluice_bin, tmp_path):
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    p = run([sluice_bin, "generate", "--prompts-file", str(prompts)])
    assert p.returncode == 2
    assert "bad.jsonl:2" in p.stderr and "prompt" in p.stderr


def test_prompts_file_fields_are_honoured_or_refused_by_name(sluice_bin, tmp_path):
    prompts = tmp_path / "fields.jsonl"
    prompts.write_text('{"prompt": "def f(x):", "speculative": false, "max_tokens": 2}\n'
                       '{"prompt": "x", "presence_penalty": 1.0}\n')
    p = run([sluice_bin, "generate", "--prompts-file", str(prompts), "--speculative-method",
             "ngram"])
    assert p.returncode == 2
    assert 'fields.jsonl:2: unknown field "presence_penalty"' in p.stderr, p.stderr
    prompts.write_text('{"prompt": "def f(x):", "speculative": false, "max_tokens": 2}\n')
    ok = run([sluice_bin, "generate", "--prompts-file", str(prompts), "--speculative-method",
              "ngram"])
    assert ok.returncode == 0, ok.stderr
    prompts.write_text('{"prompt": "x", "speculative": "no"}\n')
    bad = run([sluice_bin, "generate", "--prompts-file", str(prompts)])
    assert bad.returncode == 2 and "wrong type" in bad.stderr, bad.stderr


def test_invalid_utf8_prompt_is_refused(sluice_bin, tmp_path):
    prompts = tmp_path / "utf8.jsonl"
    prompts.write_bytes(b'{"prompt": "caf\\u00e9"}\n')
    ok = run([sluice_bin, "generate", "--prompts-file", str(prompts), "--max-tokens", "2"])
    assert ok.returncode == 0, ok.stderr
    p = subprocess.run([sluice_bin, "generate", "--prompt", b"bad \xff byte", "--max-tokens", "2"],
                       capture_output=True, timeout=120)
    assert p.returncode == 2
    assert b"UTF-8" in p.stderr


def test_random_weights_run_the_config_shape_without_a_checkpoint(sluice_bin, tmp_path):
    # A directory with only config.json and tokenizer.json: no safetensors to read.
    src = pathlib.Path(os.environ["SLUICE_SOURCE_ROOT"]) / "models" / "sluice-tiny-code"
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    args = [sluice_bin, "generate", "--model", str(tmp_path), "--prompt", "def f(x):",
            "--max-tokens", "8", "--ignore-eos", "--json"]
    p = run(args + ["--random-weights"])
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(first["output_ids"]) == 8
    # The same seed draws the same model; another seed another one.
    again = json.loads(run(args + ["--random-weights"]).stdout.strip().splitlines()[-1])
    assert again["output_ids"] == first["output_ids"]
    other = run(args + ["--random-weights", "--random-seed", "5"])
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout.strip().splitlines()[-1])["output_ids"] != first["output_ids"]
    # Without the flag the missing checkpoint is an error naming the directory.
    p = run(args)
    assert p.returncode != 0
    assert str(tmp_path) in p.stderr


def test_device_cuda_without_a_gpu_is_a_clear_error(sluice_bin):
    p = run([sluice_bin, "generate", "--device", "cuda", "--prompt", "x", "--max-tokens", "2"])
    if p.returncode == 0:
        return  # a machine with a GPU: the gpu tests cover it
    assert "--device cuda" in p.stderr
    assert "--device cpu" in p.stderr  # says what to do instead
    bad = run([sluice_bin, "generate", "--device", "tpu", "--prompt", "x"])
    assert bad.returncode != 0
    assert "--device" in bad.stderr


def test_throughput_bench_counts_every_token(sluice_bin, tmp_path):
    bench = pathlib.Path(sluice_bin).parent / "throughput_bench"
    if not bench.exists():
        pytest.skip("built without benchmarks")
    out = tmp_path / "tp.json"
    p = run([str(bench), "--num-requests", "6", "--input-len", "40", "--output-len", "12",
             "--max-num-seqs", "4", "--out", str(out)])
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["num_requests"] == 6
    assert r["prompt_tokens"] == 6 * 40
    assert r["output_tokens"] == r["expected_output_tokens"] == 6 * 12
    assert r["errors"] == 0
    # 4 at a time: decode batches of at most 4, and a first wave of 11 decode steps.
    assert 1 <= r["mean_decode_batch"] <= 4
    assert r["decode_steps"] >= 11
    assert r["mean_decode_step_ms"] > 0
    assert 0 < r["roofline_fraction"] < 1.5
    assert "decode step" in p.stdout
