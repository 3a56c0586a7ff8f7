#!/usr/bin/env python3
"""bench/deploytrace.py: what the agent's Go runtime did in a deploy's window.

Reads a runtime trace the agent wrote (bench/deploy.sh TRACE=1 names the
files DIR/STRATEGY-PID-UNIXMILLI.trace, UNIXMILLI the deploy's start) through
`go tool trace -d=parsed` and prints, for FROM..TO ms after the deploy began
(default 0..400), in buckets of STEP ms (default 10):
  - per P: ms running goroutines (by the first frame outside the runtime,
    syscall and internal/poll packages), ms in syscalls held on the P;
  - the longest waits of runnable goroutines for a P (scheduling latency) and
    whether the goroutine is the proxy's;
  - GC ranges (stop-the-world, mark) in the window.

  bench/deploytrace.py FILE [FROM TO [STEP]]
"""
import collections
import re
import subprocess
import sys

SKIP = ("runtime.", "syscall.", "internal/poll.", "internal/runtime", "sync.", "os.(*File).", "os.(*file)",
        "net.(*conn)", "net.(*netFD)", "io.", "bufio.", "internal/syscall", "time.Sleep", "os.", "context.",
        "reflect.", "encoding/json.", "fmt.", "strconv.")


def label(frames):
    for f in frames:
        if not f.startswith(SKIP):
            return f
    return frames[0] if frames else "?"


def main():
    path = sys.argv[1]
    lo = float(sys.argv[2]) if len(sys.argv) > 2 else 0
    hi = float(sys.argv[3]) if len(sys.argv) > 3 else 400
    step = float(sys.argv[4]) if len(sys.argv) > 4 else 10
    begin_ms = int(re.search(r"-(\d+)\.trace$", path).group(1))
    out = subprocess.run(["go", "tool", "trace", "-d=parsed", path], capture_output=True, text=True).stdout.splitlines()
    events = []  # (time, P, G, kind, rest, frames)
    cur = None
    for line in out:
        if line.startswith("M="):
            if cur:
                events.append(cur)
            m = re.match(r"M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+) ?(.*)", line)
            if not m:
                cur = None
                continue
            cur = [int(m.group(5)), int(m.group(2)), int(m.group(3)), m.group(4), m.group(6), [], []]
            into = 6
        elif cur is not None and line.startswith("\t") and not line.startswith("\t\t"):
            cur[into].append(line.strip().split(" @ ")[0])
        elif cur is not None and line.startswith("TransitionStack="):
            into = 5
        elif cur is not None and line.startswith("Stack="):
            into = 6
    if cur:
        events.append(cur)
    # wall clock: from the first Sync event
    sync = next(e for e in events if e[3] == "Sync")
    mono = int(re.search(r"Mono=(\d+)", sync[4]).group(1))
    wall = re.search(r"Wall=(\S+)", sync[4]).group(1)
    from datetime import datetime
    w = datetime.strptime(wall[:26], "%Y-%m-%dT%H:%M:%S.%f")
    frac = wall[20:].rstrip("Z")
    wall_ns = int(w.replace(microsecond=0).timestamp()) * 10**9 + int((frac + "000000000")[:9])
    # datetime.timestamp() treats a naive time as local; the container runs in UTC
    def rel(t):  # ms after the deploy began
        return (wall_ns + (t - mono)) / 1e6 - begin_ms

    nb = int((hi - lo) / step)
    run = collections.defaultdict(lambda: collections.Counter())  # (P, bucket) -> label -> ms
    sysc = collections.defaultdict(lambda: collections.Counter())
    g_state = {}  # G -> (state, since, P, label)
    waits = []  # (wait ms, at, label)
    gc = []
    open_ranges = {}

    def add(counter, p, a, b, lab):
        a, b = max(a, lo), min(b, hi)
        while a < b:
            k = int((a - lo) // step)
            e = min(b, lo + (k + 1) * step)
            counter[(p, k)][lab] += e - a
            a = e

    glabel = {}
    for t, p, g, kind, rest, tstack, stack in events:
        r = rel(t)
        if kind == "StateTransition":
            m = re.match(r"GoID=(\d+) (\w+)->(\w+)", rest)
            if not m:
                continue
            gid, a, b = int(m.group(1)), m.group(2), m.group(3)
            if tstack:
                glabel[gid] = label(tstack)
            elif stack and gid == g:
                glabel[gid] = label(stack)
            st = g_state.get(gid)
            if st:
                s0, since, sp, _ = st
                lab = glabel.get(gid, "?")
                if s0 == "Running":
                    add(run, sp, since, r, lab)
                elif s0 == "Syscall":
                    add(sysc, sp, since, r, lab)
                elif s0 == "Runnable" and b == "Running" and lo <= r <= hi:
                    waits.append((r - since, since, lab, gid))
            g_state[gid] = (b, r, p, None)
        elif kind in ("RangeBegin", "RangeEnd"):
            name = re.search(r'Name="([^"]+)"', rest).group(1)
            if kind == "RangeBegin":
                open_ranges[(name, g)] = r
            elif (name, g) in open_ranges:
                a = open_ranges.pop((name, g))
                if b_overlap(a, r, lo, hi) and "assist" not in name:
                    gc.append((a, r, name))

    print(f"{path}: {lo:.0f}..{hi:.0f} ms after the deploy began, {step:.0f} ms buckets")
    print("GC:", "; ".join(f"{n} {a:+.1f}..{b:+.1f}ms" for a, b, n in sorted(gc)) or "none")
    for k in range(nb):
        parts = []
        for p in (0, 1, 2, 3):
            c = run.get((p, k))
            s = sysc.get((p, k))
            if not c and not s:
                continue
            tot = sum(c.values()) if c else 0
            top = ", ".join(f"{l} {v:.1f}" for l, v in (c.most_common(2) if c else []))
            sy = ", ".join(f"{l} {v:.1f}" for l, v in (s.most_common(2) if s else []))
            parts.append(f"P{p} run {tot:.1f} [{top}]" + (f" sys [{sy}]" if sy else ""))
        print(f"{lo + k * step:+6.0f}ms  " + " | ".join(parts))
    waits.sort(reverse=True)
    print("longest waits for a P (runnable → running):")
    for wms, at, lab, gid in waits[:15]:
        print(f"  {wms:6.2f} ms from {at:+.1f}ms  g{gid} {lab}")


def b_overlap(a, b, lo, hi):
    return a < hi and b > lo


if __name__ == "__main__":
    main()
