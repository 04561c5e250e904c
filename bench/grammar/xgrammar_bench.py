"""The peer side of bench/grammar: xgrammar (the grammar engine vLLM, SGLang and
TensorRT-LLM use) on the same vocabulary (the token bytes grammar_bench wrote), the same
schemas and the same token walks, one thread: compile time and per-token mask time, for a
first request with a schema and for a second one replaying the same walk.
    python xgrammar_bench.py OUT_DIR
Reads OUT_DIR/vocab.json and OUT_DIR/sluice.json; writes OUT_DIR/xgrammar.json."""
import json
import sys
import time

import xgrammar as xgr


def main(out_dir):
    vocab = json.load(open(f"{out_dir}/vocab.json"))
    ours = json.load(open(f"{out_dir}/sluice.json"))
    encoded = [bytes(t) for t in vocab["tokens"]]
    # Empty token strings are the special tokens: xgrammar never allows those either.
    info = xgr.TokenizerInfo(encoded, vocab_type=xgr.VocabType.RAW,
                             stop_token_ids=vocab["eos"])
    results = []
    for r in ours["results"]:
        compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        t0 = time.perf_counter()
        compiled = compiler.compile_json_schema(json.dumps(r["schema"]), any_whitespace=True,
                                                strict_mode=True)
        compile_us = (time.perf_counter() - t0) * 1e6
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
        mask_us, replayed = [], 0
        for token in r["walk"]:
            t0 = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            mask_us.append((time.perf_counter() - t0) * 1e6)
            if not matcher.accept_token(token):
                break  # the two grammars differ here: compare the steps before
            replayed += 1
        # The same walk again, as a later request with the same compiled grammar.
        matcher, again_us = xgr.GrammarMatcher(compiled), []
        for token in r["walk"][:replayed]:
            t0 = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            again_us.append((time.perf_counter() - t0) * 1e6)
            matcher.accept_token(token)
        results.append({"name": r["name"], "compile_us": compile_us, "mask_us": mask_us,
                        "again_us": again_us,
                        "replayed": replayed, "walk": len(r["walk"])})
        print(f"\r{len(results)}/{len(ours['results'])} schemas", end="", file=sys.stderr)
    print(file=sys.stderr)
    json.dump({"results": results}, open(f"{out_dir}/xgrammar.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
