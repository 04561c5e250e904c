"""Makes reference.json: Hugging Face transformers' log-likelihood of each choice of
items.jsonl given its context, on the tiny model, tokenized as lm-evaluation-harness
tokenizes a (context, continuation) pair for a causal model: the context's trailing
spaces move to the continuation, the whole text is encoded, and the continuation is
what follows the context's tokens. Float32 math on the bf16 weights.

Needs torch and transformers (not in the test environment): run it again only when the
items or the model change.
    python tests/e2e/lm_eval/make_reference.py models/sluice-tiny-code
"""
import json
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = pathlib.Path(__file__).parent
DELIMITER = " "  # lm-eval's default target_delimiter for multiple choice


def encode_pair(tok, context, continuation):
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    ctx = tok(context, add_special_tokens=False).input_ids
    return ctx, whole[len(ctx):]


def main(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = []
    for line in (HERE / "items.jsonl").read_text().splitlines():
        item = json.loads(line)
        for choice in item["choices"]:
            ctx, cont = encode_pair(tok, item["context"], DELIMITER + choice)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logits = model(ids).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            scored = [logprobs[len(ctx) + i - 1] for i in range(len(cont))]
            loglikelihood = sum(float(lp[t]) for lp, t in zip(scored, cont))
            greedy = all(int(lp.argmax()) == t for lp, t in zip(scored, cont))
            out.append({"context": item["context"], "continuation": DELIMITER + choice,
                        "context_ids": ctx, "continuation_ids": cont,
                        "loglikelihood": loglikelihood, "is_greedy": greedy})
    meta = {"model": pathlib.Path(model_dir).name, "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "dtype": "float32"}
    (HERE / "reference.json").write_text(json.dumps({"made_with": meta, "pairs": out}, indent=1)
                                         + "\n")
    print(f"{len(out)} pairs")


if __name__ == "__main__":
    main(sys.argv[1])
