"""`sluice generate` end to end: parity with transformers through the engine, and clear
errors for bad input."""
import json
import subprocess


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


def test_invalid_utf8_prompt_is_refused(sluice_bin, tmp_path):
    prompts = tmp_path / "utf8.jsonl"
    prompts.write_bytes(b'{"prompt": "caf\\u00e9"}\n')
    ok = run([sluice_bin, "generate", "--prompts-file", str(prompts), "--max-tokens", "2"])
    assert ok.returncode == 0, ok.stderr
    p = subprocess.run([sluice_bin, "generate", "--prompt", b"bad \xff byte", "--max-tokens", "2"],
                       capture_output=True, timeout=120)
    assert p.returncode == 2
    assert b"UTF-8" in p.stderr
