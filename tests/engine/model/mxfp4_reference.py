"""Writes mxfp4_reference.json: synthetic MXFP4 tensors and their values, decoded with
NumPy from the OCP Microscaling spec (v1.0: FP4 E2M1 elements, E8M0 shared scales, 32
elements a block), independently of the C++ decoder it checks. Packing as gpt-oss's
checkpoints: two elements a byte, the first in the low nibble.
    .venv/bin/python tests/engine/model/mxfp4_reference.py  (the test venv has NumPy)"""
import json
import pathlib

import numpy as np


def e2m1(code):
    """E2M1: 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit; exponent 0 is subnormal."""
    sign = -1.0 if code & 0b1000 else 1.0
    exponent = (code >> 1) & 0b11
    mantissa = code & 0b1
    if exponent == 0:
        return sign * (mantissa / 2) * 2.0 ** (1 - 1)
    return sign * (1 + mantissa / 2) * 2.0 ** (exponent - 1)


def e8m0(bits):
    """E8M0: an exponent only, bias 127; 0xFF is NaN."""
    return np.nan if bits == 0xFF else 2.0 ** (int(bits) - 127)


def main():
    rng = np.random.default_rng(20261202)
    rows, cols = 5, 96  # three blocks a row
    blocks = rng.integers(0, 256, size=(rows, cols // 32, 16), dtype=np.uint8)
    scales = rng.integers(110, 140, size=(rows, cols // 32), dtype=np.uint8)
    scales[1, 2] = 0        # the smallest scale, 2^-127
    scales[3, 0] = 0xFF     # NaN
    values = np.zeros((rows, cols), dtype=np.float64)
    for r in range(rows):
        for g in range(cols // 32):
            for i in range(16):
                byte = int(blocks[r, g, i])
                values[r, g * 32 + 2 * i] = e2m1(byte & 0x0F) * e8m0(scales[r, g])
                values[r, g * 32 + 2 * i + 1] = e2m1(byte >> 4) * e8m0(scales[r, g])
    out = {"rows": rows, "cols": cols, "blocks": blocks.flatten().tolist(),
           "scales": scales.flatten().tolist(),
           "values": [None if np.isnan(v) else float(v) for v in values.flatten()],
           "e2m1": [e2m1(c) for c in range(16)]}
    path = pathlib.Path(__file__).with_name("mxfp4_reference.json")
    path.write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
