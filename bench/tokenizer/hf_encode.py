"""Encode throughput of Hugging Face `tokenizers` on one file, one thread.

Usage: hf_encode.py TOKENIZER_JSON CORPUS [RUNS] [IDS_OUT] [CHUNK_BYTES]
Prints one line per run and `result mb_per_s_cold=X mb_per_s_best=Y num_tokens=Z`,
the same protocol as tokenizer_bench (CHUNK_BYTES cuts the corpus the same way).
"""
import array
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer, __version__  # noqa: E402


def chunks(data: bytes, chunk_bytes: int) -> list:
    """Texts ending at the first newline at or after chunk_bytes bytes (0: whole)."""
    if chunk_bytes == 0:
        return [data.decode("utf-8")]
    out = []
    start = 0
    while start < len(data):
        end = data.find(b"\n", min(len(data), start + chunk_bytes))
        end = len(data) if end < 0 else end + 1
        out.append(data[start:end].decode("utf-8"))
        start = end
    return out


def main() -> None:
    tokenizer_json, corpus_path = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    ids_out = sys.argv[4] if len(sys.argv) > 4 else ""
    chunk_bytes = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    with open(corpus_path, "rb") as f:
        data = f.read()
    texts = chunks(data, chunk_bytes)
    tokenizer = Tokenizer.from_file(tokenizer_json)
    mb = len(data) / 1e6
    cold = best = 0.0
    ids = []
    print(f"tokenizers {__version__}", flush=True)
    for run in range(runs):
        start = time.perf_counter()
        ids = []
        for text in texts:
            ids.extend(tokenizer.encode(text, add_special_tokens=False).ids)
        seconds = time.perf_counter() - start
        rate = mb / seconds
        cold = rate if run == 0 else cold
        best = max(best, rate)
        print(f"run {run}: {mb:.2f} MB in {seconds:.3f} s = {rate:.2f} MB/s, {len(ids)} tokens",
              flush=True)
    if ids_out:
        with open(ids_out, "wb") as f:
            array.array("i", ids).tofile(f)
    print(f"result mb_per_s_cold={cold:.3f} mb_per_s_best={best:.3f} num_tokens={len(ids)}")


if __name__ == "__main__":
    main()
