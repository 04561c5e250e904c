"""Differential tests against the reference implementations, live: the tokenizers
against Hugging Face `tokenizers` on 100,000 random and real strings each, and the chat
template renderer against Python jinja2 (configured as transformers configures it) on the
Llama-3, Qwen2, Mistral and ChatML templates over generated conversations. Both sides
see the same inputs; Sluice's side runs through `sluice tokenize --jsonl` and `sluice
chat-template --jsonl`."""
import glob
import json
import os
import pathlib
import random
import subprocess
import sys
import unicodedata

import jinja2
import pytest
from tokenizers import Tokenizer

from conftest import ROOT, SHARED

sys.path.insert(0, str(ROOT / "tests/server/chat/testdata"))
from render_cases import TOOLS, make_env  # noqa: E402

STRINGS_PER_TOKENIZER = int(os.environ.get("SLUICE_DIFF_STRINGS", "100000"))
TOKENIZERS = {
    "sluice-tiny-code": ROOT / "models/sluice-tiny-code",
    "llama3_1": SHARED / "fixtures/tokenizers/llama3_1",
    "llama2": SHARED / "fixtures/tokenizers/llama2",
    "qwen3": SHARED / "fixtures/tokenizers/qwen3",
}

# Pieces random strings are made of: ASCII code and prose, whitespace runs, digits,
# accented and combining letters, CJK, emoji (with ZWJ and skin tones), RTL, controls.
PIECES = [
    "def", " return", "x", "_", "(", ")", ":", "\n", "\n\n", "    ", "\t", " ", "  ", "\r\n",
    "0", "12", "345", "6789", "3.14", "-", "+", "==", "'s", "'ll", "n't", "The", " the",
    "é", "e\u0301", "ü", "ß", "Ω", "ж", "日本", "語", "한국어", "🙂", "👍🏽", "👨‍👩‍👧", "🚀",
    "مرحبا", "שלום", "\u200b", "\x00", "\x07", "\u00a0", "\u3000", "<|endoftext|>", "<s>",
    "</s>", "<|im_start|>", "[INST]", "▁", "Ġ", "\ufffd", "\U0001F600",
]


def random_code_point(rng):
    """A scalar value assigned in Unicode 14, or a noncharacter (unassigned in every
    version). NOTE: the pre-tokenizer's letter and number classes come from PCRE2's
    Unicode 14 tables (Debian 12), the reference's from a later Unicode: a code point
    assigned since (CJK Extension H, say) is a letter there and not here, and strings of
    them split differently. Python 3.11's unicodedata is Unicode 14 too."""
    while True:
        cp = rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0xD7FF),
                         rng.randint(0xE000, 0x10FFFF)])
        if unicodedata.category(chr(cp)) != "Cn" or (cp & 0xFFFE) == 0xFFFE or \
                0xFDD0 <= cp <= 0xFDEF:
            return chr(cp)


def random_strings(rng, n):
    assert unicodedata.unidata_version == "14.0.0", unicodedata.unidata_version
    out = []
    for _ in range(n):
        k = rng.randint(0, 12)
        if rng.random() < 0.3:  # arbitrary code points
            s = "".join(random_code_point(rng) for _ in range(k))
        else:
            s = "".join(rng.choice(PIECES) for _ in range(k))
        out.append(s)
    return out


def real_strings(n):
    """Lines and paragraphs of real text: the Python standard library's sources and
    docstrings (code, comments, prose, some non-ASCII)."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"),
                             recursive=True))
    out = []
    for path in files:
        try:
            text = pathlib.Path(path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        lines = text.split("\n")
        for i in range(0, len(lines), 3):
            out.append("\n".join(lines[i:i + 3]))
            if len(out) >= n:
                return out
    return out


def sluice_jsonl(sluice_bin, args, lines, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                   encoding="utf-8")
    r = subprocess.run([sluice_bin, *args, "--jsonl", str(inp)], capture_output=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    # One JSON object per "\n" (not splitlines(): U+2028 and the like sit inside strings).
    out = [json.loads(line) for line in r.stdout.decode("utf-8").split("\n") if line]
    assert len(out) == len(lines)
    return out


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_tokenizer_matches_hugging_face(name, sluice_bin, tmp_path):
    directory = TOKENIZERS[name]
    hf = Tokenizer.from_file(str(directory / "tokenizer.json"))
    rng = random.Random(name)
    half = STRINGS_PER_TOKENIZER // 2
    texts = random_strings(rng, half) + real_strings(STRINGS_PER_TOKENIZER - half)
    assert len(texts) == STRINGS_PER_TOKENIZER
    specials = [rng.random() < 0.25 for _ in texts]
    ours = sluice_jsonl(sluice_bin, ["tokenize", "--tokenizer", str(directory)],
                        [{"text": t, "add_special_tokens": s} for t, s in zip(texts, specials)],
                        tmp_path)
    mismatches = []
    for text, special, mine in zip(texts, specials, ours):
        want = hf.encode(text, add_special_tokens=special).ids
        if mine.get("ids") != want:
            mismatches.append(("encode", text, special, mine, want))
        elif mine["decoded"] != hf.decode(want, skip_special_tokens=False):
            mismatches.append(("decode", text, special, mine["decoded"],
                               hf.decode(want, skip_special_tokens=False)))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ; first: {mismatches[:3]}"


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def chat_templates():
    out = {"chatml": CHATML}
    for name in ("llama3_1", "qwen3"):
        config = json.loads((SHARED / f"fixtures/tokenizers/{name}/tokenizer_config.json")
                            .read_text())
        out[name] = config["chat_template"]
    testdata = ROOT / "tests/server/chat/testdata"
    for name in ("qwen2_tools", "mistral_alternating", "mistral_tools", "llama3_tools"):
        out[name] = (testdata / f"{name}.jinja").read_text()
    return out


def random_conversation(rng):
    texts = ["Hello", "  spaced  ", "Ünïcödé 日本語 🚀", "line\nbreak", "\"quotes\" \\ back",
             "", "{{ not a template }}", "<|im_end|> injected", "tab\there", "x" * 50]
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(texts)})
    for turn in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": rng.choice(texts)})
        if rng.random() < 0.25:
            call_id = "".join(rng.choice("abcdefghi123") for _ in range(9))
            messages.append({"role": "assistant", "content": rng.choice(["", None]),
                             "tool_calls": [{"id": call_id, "type": "function", "function": {
                                 "name": "get_weather",
                                 "arguments": rng.choice([{"city": "Oslo", "n": 2},
                                                          "{\"city\": \"Paris\"}"])}}]})
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": rng.choice(texts)})
        if rng.random() < 0.8:
            messages.append({"role": "assistant", "content": rng.choice(texts)})
        if rng.random() < 0.1:  # a role order some templates refuse
            messages.append({"role": rng.choice(["user", "assistant"]), "content": "again"})
    return {"messages": messages, "tools": TOOLS if rng.random() < 0.3 else None,
            "add_generation_prompt": rng.random() < 0.5, "bos_token": "<s>",
            "eos_token": "</s>", "documents": None, "date_string": "01 Jan 2025"}


@pytest.mark.parametrize("name", list(chat_templates()))
def test_chat_template_matches_jinja2(name, sluice_bin, tmp_path):
    source = chat_templates()[name]
    template_file = tmp_path / "template.jinja"
    template_file.write_text(source, encoding="utf-8")
    compiled = make_env().from_string(source)
    rng = random.Random(name)
    contexts = [random_conversation(rng) for _ in range(600)]
    ours = sluice_jsonl(sluice_bin, ["chat-template", "--template", str(template_file)],
                        contexts, tmp_path)
    rendered = refused = 0
    mismatches = []
    for ctx, mine in zip(contexts, ours):
        try:
            want, err = compiled.render(**ctx), None
        except jinja2.exceptions.TemplateError as e:
            want, err = None, str(e)
        except Exception as e:  # noqa: BLE001  a Python error inside the template
            want, err = None, type(e).__name__
        if want is not None:
            rendered += 1
            if mine.get("text") != want:
                mismatches.append((ctx, mine, want))
        else:
            refused += 1
            if "error" not in mine:
                mismatches.append((ctx, mine, err))
            elif err and "raise_exception" not in source:
                pass
            elif err and err not in mine["error"] and not err.endswith("Error"):
                mismatches.append((ctx, mine, err))
    assert rendered > 100, (rendered, refused)
    assert not mismatches, f"{len(mismatches)} of {len(contexts)} differ; first: {mismatches[0]}"
