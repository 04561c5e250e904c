"""The soak's plumbing: free ports, process RSS, the keys file, Prometheus scrapes and
the RSS plot. bench/soak/soak.py is the soak itself."""
import collections
import hashlib
import json
import re
import socket

import httpx

KEYS = {"main": "sk-soak-main", "small": "sk-soak-small", "rotating": "sk-soak-rotating",
        "tpm": "sk-soak-tpm"}
# The main tenant's limits. Normal traffic is n=1 and at most ~120 requests at once (a
# burst), so it never holds more than MAIN_MAX_CONCURRENT sequences, well under
# MAIN_MAX_SEQUENCES; the fan-out attack asks for FANOUT_PROMPTS x FANOUT_N more at once.
# (Left out, max_concurrent_sequences would default to max_concurrent x 16 = 1024.)
MAIN_MAX_CONCURRENT, MAIN_MAX_SEQUENCES = 64, 128
FANOUT_PROMPTS, FANOUT_N = 15, 16
TPM_TOKENS_PER_MINUTE, TPM_MAX_TOKENS = 2000, 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:  # exited: chores() notices and stops the soak
        pass
    return 0


def write_keys(path, with_rotating):
    tenants = [
        {"name": "main", "key_sha256": hashlib.sha256(KEYS["main"].encode()).hexdigest(),
         "max_concurrent": MAIN_MAX_CONCURRENT, "max_concurrent_sequences": MAIN_MAX_SEQUENCES},
        {"name": "small", "key_sha256": hashlib.sha256(KEYS["small"].encode()).hexdigest(),
         "requests_per_minute": 30},
        {"name": "tpm", "key_sha256": hashlib.sha256(KEYS["tpm"].encode()).hexdigest(),
         "tokens_per_minute": TPM_TOKENS_PER_MINUTE},
    ]
    if with_rotating:
        tenants.append({"name": "rotating",
                        "key_sha256": hashlib.sha256(KEYS["rotating"].encode()).hexdigest()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tenants": tenants}))
    tmp.rename(path)


def metrics(url):
    out = collections.Counter()
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def series(scrape, name):
    """(labels, value) of every sample of the metric `name` in a metrics() scrape."""
    out = []
    for key, value in scrape.items():
        if key.startswith(name + "{") and key.endswith("}"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', key[len(name) + 1:-1]))
            out.append((labels, value))
        elif key == name:
            out.append(({}, value))
    return out


def svg_plot(series, path, title):
    """RSS (MiB) against minutes, one line per process."""
    w, h, pad = 720, 320, 50
    t_max = max(t for s in series.values() for t, _ in s) or 1
    v_max = max(v for s in series.values() for _, v in s) * 1.1 or 1
    colors = ["#1f77b4", "#d62728"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{w / 2}" y="18" text-anchor="middle">{title}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="30" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">minutes</text>',
             f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
             f'text-anchor="middle">RSS (MiB)</text>']
    for i in range(5):
        v = v_max * i / 4
        y = h - pad - (h - pad - 30) * i / 4
        parts.append(f'<text x="{pad - 4}" y="{y + 4}" text-anchor="end">{v:.0f}</text>')
        t = t_max * i / 4
        x = pad + (w - pad - 10) * i / 4
        parts.append(f'<text x="{x}" y="{h - pad + 16}" text-anchor="middle">{t:.0f}</text>')
    for (name, pts), color in zip(series.items(), colors):
        xy = " ".join(f"{pad + (w - pad - 10) * t / t_max:.1f},"
                      f"{h - pad - (h - pad - 30) * v / v_max:.1f}" for t, v in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{xy}"/>')
        parts.append(f'<text x="{w - 150}" y="{45 + 16 * list(series).index(name)}" '
                     f'fill="{color}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))
