"""Writes a corpus of Python standard-library source: UTF-8 .py files under
/usr/lib/python3*/ in sorted path order, concatenated up to a byte limit.

Usage: make_corpus.py OUT [MAX_BYTES]
"""
import glob
import sys


def main() -> None:
    out_path = sys.argv[1]
    max_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 8_000_000
    paths = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    total = 0
    num_files = 0
    with open(out_path, "wb") as out:
        for path in paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if total + len(data) > max_bytes:
                break
            out.write(data)
            total += len(data)
            num_files += 1
    print(f"corpus: {out_path}, {num_files} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
