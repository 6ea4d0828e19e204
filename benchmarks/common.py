"""What the CPU benchmarks share: the machine's load, the header naming command and versions,
and the table printed last."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys


def load() -> str:
    """The 1, 5 and 15 minute load averages (the machine may be shared)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def header(script: str, root, versions: str) -> None:
    """The exact command, the time, the machine and the versions, as comment lines."""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script, root),
                                                          *sys.argv[1:]])
    print(f"# {cmd} — {now}")
    print(f"# {os.cpu_count()} cores (nproc), {platform.machine()}; Python "
          f"{platform.python_version()}, {versions}")
    print(f"# load average before: {load()}")


def table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the first left-aligned, the others right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def forward_args(doc: str, warmup: int, extra=None):
    """The options of a forward-pass benchmark (rounds, warm-up, batch, size, threads), parsed;
    `extra(parser)` adds a script's own. Sets torch's thread count when asked."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9, help="timed rounds (median; at least 5)")
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    if extra:
        extra(ap)
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
