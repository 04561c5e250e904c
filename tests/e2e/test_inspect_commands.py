"""`sluice tokenize` and `sluice chat-template` against the published tokenizers' fixtures."""
import json
import subprocess

import pytest

from conftest import SHARED

TOKENIZERS = ["llama3_1", "llama2", "qwen3"]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=120, **kw)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokenize_json_matches_cases(sluice_bin, name):
    directory = SHARED / "fixtures" / "tokenizers" / name
    cases = json.loads((directory / "cases.json").read_text())
    cases = cases["cases"] if isinstance(cases, dict) else cases
    for case in cases[:8]:
        text = case.get("text", case.get("input"))
        p = run([sluice_bin, "tokenize", "--tokenizer", str(directory), "--text", text,
                 "--add-special-tokens", "--json"])
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        want = case.get("ids_with_special", case.get("ids_special"))
        assert out["ids"] == want, text
        assert len(out["tokens"]) == len(out["ids"])


@pytest.mark.parametrize("name", ["llama3_1", "qwen3"])
def test_chat_template_reproduces_renders(sluice_bin, name, tmp_path):
    directory = SHARED / "fixtures" / "tokenizers" / name
    fixture = json.loads((directory / "chat_cases.json").read_text())
    checked = 0
    for i, case in enumerate(fixture["cases"]):
        if case.get("kwargs"):
            continue  # kwargs such as a fixed date are covered by the renderer's own tests
        conv = {"messages": case["messages"]}
        if case.get("tools") is not None:
            conv["tools"] = case["tools"]
        f = tmp_path / f"conv{i}.json"
        f.write_text(json.dumps(conv))
        args = [sluice_bin, "chat-template", "--tokenizer", str(directory), "--conversation", str(f)]
        if case["add_generation_prompt"]:
            args.append("--add-generation-prompt")
        p = run(args)
        if p.returncode != 0 and b"strftime" in p.stderr:
            continue
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == case["rendered"], case["messages"]
        checked += 1
    assert checked >= 1


def test_tokenize_plain_output_and_errors(sluice_bin, tmp_path):
    p = run([sluice_bin, "tokenize", "--text", "def f():"])
    assert p.returncode == 0
    assert len(p.stdout.decode().strip().splitlines()) >= 2
    bad = run([sluice_bin, "tokenize", "--tokenizer", str(tmp_path), "--text", "x"])
    assert bad.returncode == 2 and b"tokenizer.json" in bad.stderr
