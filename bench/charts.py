#!/usr/bin/env python3
"""`make bench`'s charts: bench/report.py calls write_all() with the raw
results it tabulates, and this draws three SVGs into docs/ beside
BENCHMARKS.md:

- bench-cold-start.svg: each function's median cold start as a stacked bar
  (hello's whole cold start as the baseline, the service's own CPU and
  waiting, the network round trips, one bcrypt verify), hello as its own bar;
- bench-rename.svg: rename time against tenant size, the service against
  `$out`+`drop`, log-log;
- bench-warm-latency.svg: p50/p90/p99 per route and connection count from wrk.

A chart whose data is missing is not drawn: write_all says why instead, and
removes the file a previous run left, so BENCHMARKS.md never shows a stale one.
The output is deterministic (fixed SVG ids, no date), so an unchanged run
leaves the files unchanged.

Usage: charts.py --selftest   (draws the three charts from a small synthetic
data set into a temporary directory and checks them)
"""

import os
import statistics
import sys
from typing import NamedTuple

COLD_FILE = "bench-cold-start.svg"
RENAME_FILE = "bench-rename.svg"
WARM_FILE = "bench-warm-latency.svg"

# Stacking order, bottom to top, with legend text and colour. bcrypt comes
# last so that with a broken axis every other part stays left of the break.
COMPONENTS = [
    ("baseline", "baseline: hello's whole cold start", "#9e9e9e"),
    ("unexplained", "unexplained: the rest of the median total", "#8c6bb1"),
    ("secret", "secret fetch (Secrets Manager)", "#e6ab02"),
    ("handshake", "MongoDB handshakes (+ warm-up ping)", "#1f78b4"),
    ("queries", "queries", "#33a02c"),
    ("publish", "publish (EventBridge)", "#ff7f00"),
    ("index", "index on path (createIndexes alone)", "#a6cee3"),
    ("bcrypt", "one bcrypt verify (timed just before the run)", "#e31a1c"),
]
# When round trips of several kinds are outstanding at once, the instant
# counts for the first of these, so the network parts add up to the union.
# Index last: "index on path" is the time with nothing but createIndexes
# outstanding, as in the table.
NETWORK = ["secret", "handshake", "queries", "publish", "index"]
HANDSHAKE_COMMANDS = {"hello", "isMaster", "ismaster", "saslStart", "saslContinue", "authenticate", "ping"}
INDEX_COMMANDS = {"createIndexes", "listIndexes"}
PERCENTILES = [("p50_us", "p50", "#a6cee3"), ("p90_us", "p90", "#1f78b4"), ("p99_us", "p99", "#08306b")]

STYLE = {
    "svg.hashsalt": "make-bench",
    "svg.fonttype": "path",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


class Chart(NamedTuple):
    file: str  # file name in the docs directory
    drawn: bool
    alt: str
    caption: str  # when not drawn: why


def median(xs):
    """The median of the values that are there; None when none is."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ms(x):
    """A time in ms in at most four digits (three significant ones below 100)."""
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ms1(x):
    """A time in ms as the cold-start table prints it (whole ms from 100)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


# ---------------------------------------------------------------- cold start

def _category(label, conn):
    if str(conn).startswith("aws#"):
        return "publish" if label.startswith("awsevents.") else "secret"
    if label in HANDSHAKE_COMMANDS:
        return "handshake"
    if label in INDEX_COMMANDS:
        return "index"
    return "queries"


def network_split(run):
    """One run's network time (exec → response) split by kind, each instant
    counted once (for the first kind in NETWORK outstanding then), from the
    run's timeline of round trips."""
    end = run["total_ms"]
    intervals = []
    for label, conn, a, b in run.get("timeline", []):
        a, b = max(a, 0.0), min(b, end)
        if b > a:
            intervals.append((a, b, NETWORK.index(_category(label, conn))))
    split = dict.fromkeys(NETWORK, 0.0)
    points = sorted({p for a, b, _ in intervals for p in (a, b)})
    for lo, hi in zip(points, points[1:]):
        kinds = [k for a, b, k in intervals if a < hi and b > lo]
        if kinds:
            split[NETWORK[min(kinds)]] += hi - lo
    return split


def cold_breakdown(harness, order):
    """Per function (in `order`, those with runs), the median cold start in
    parts that add up to the median total: hello's median total as the
    baseline, the medians of the network parts and of the bcrypt reference,
    and the rest as `unexplained` (the table's column, from the same medians).
    Empty without hello runs (no baseline)."""
    by_fn = {}
    for r in harness.get("cold", {}).get("runs", []):
        by_fn.setdefault(r["fn"], []).append(r)
    if not by_fn.get("hello"):
        return []
    base = median([r["total_ms"] for r in by_fn["hello"]])
    rows = []
    for fn in order:
        rs = by_fn.get(fn)
        if not rs:
            continue
        total = median([r["total_ms"] for r in rs])
        parts = dict.fromkeys((c for c, _, _ in COMPONENTS), 0.0)
        if fn == "hello":
            parts["baseline"] = total
        else:
            splits = [network_split(r) for r in rs]
            for kind in NETWORK:
                parts[kind] = median([s[kind] for s in splits])
            parts["bcrypt"] = median([r["bcrypt_ref_ms"] for r in rs if "bcrypt_ref_ms" in r]) or 0.0
            parts["baseline"] = base
            parts["unexplained"] = total - sum(parts.values())
        rows.append({"fn": fn, "runs": len(rs), "total": total, "parts": parts})
    return rows


def _draw_cold(plt, rows, path):
    n_runs = max(r["runs"] for r in rows)
    drawn = [{k: max(v, 0.0) for k, v in r["parts"].items()} for r in rows]
    ends = [sum(d.values()) for d in drawn]
    before_bcrypt = [e - d["bcrypt"] for e, d in zip(ends, drawn)]
    with_bcrypt = [i for i, d in enumerate(drawn) if d["bcrypt"] > 0]
    left_need = max([before_bcrypt[i] for i in range(len(rows))]
                    + [ends[i] for i in range(len(rows)) if i not in with_bcrypt])
    left_max = left_need * 1.3
    broken = False
    if with_bcrypt:
        right_lo = min(ends[i] for i in with_bcrypt) - 0.1 * left_max
        right_hi = max(ends[i] for i in with_bcrypt) + 0.45 * left_max
        broken = right_lo > 2 * left_max
    if broken:
        spans = [(0.0, left_max), (right_lo, right_hi)]
    else:
        spans = [(0.0, max(ends) * 1.25)]

    height = 1.9 + 0.42 * len(rows)
    fig = plt.figure(figsize=(10, height), layout="constrained")
    axes = fig.subplots(1, len(spans), sharey=True,
                        width_ratios=[hi - lo for lo, hi in spans] if broken else None, squeeze=False)[0]
    fig.get_layout_engine().set(wspace=0.03 if broken else 0.02)
    ys = list(range(len(rows)))
    labels = [("hello (baseline)" if r["fn"] == "hello" else r["fn"]) for r in rows]
    for ax, (lo, hi) in zip(axes, spans):
        left = [0.0] * len(rows)
        for key, legend, colour in COMPONENTS:
            widths = [d[key] for d in drawn]
            ax.barh(ys, widths, left=left, height=0.62, color=colour, edgecolor="white", linewidth=0.5,
                    label=legend)
            left = [a + w for a, w in zip(left, widths)]
        ax.set_xlim(lo, hi)
        ax.grid(axis="y", visible=False)
        ax.set_yticks(ys, labels)
        ax.tick_params(axis="y", length=0)
    axes[0].invert_yaxis()  # hello on top; the panels share the y axis
    fig.canvas.draw()  # axis sizes are known from here on

    def inches_per_ms(ax):
        lo, hi = ax.get_xlim()
        return ax.get_window_extent().width / fig.dpi / (hi - lo)

    for i, d in enumerate(drawn):
        # Each part's value inside it, in the panel where most of it shows,
        # when there is room for the text.
        x = 0.0
        for key, _, colour in COMPONENTS:
            w = d[key]
            if w > 0:
                best = None
                for ax in axes:
                    lo, hi = ax.get_xlim()
                    a, b = max(x, lo), min(x + w, hi)
                    if b > a and (best is None or (b - a) * inches_per_ms(ax) > best[0]):
                        best = ((b - a) * inches_per_ms(ax), ax, (a + b) / 2)
                if best and best[0] >= 0.3:
                    dark = key in ("unexplained", "handshake", "bcrypt", "queries")
                    best[1].text(best[2], i, _ms1(rows[i]["parts"][key]), ha="center", va="center", fontsize=7.5,
                                 color="white" if dark else "black")
            x += w
        total = rows[i]["total"]
        label = f"{total:.1f} ms" + (f"  (bcrypt {d['bcrypt']:.0f})" if d["bcrypt"] > 0 else "")
        for ax in axes:
            lo, hi = ax.get_xlim()
            if lo <= ends[i] <= hi:
                ax.annotate(label, (ends[i], i), xytext=(4, 0), textcoords="offset points", va="center",
                            fontsize=8.5)
                break

    if broken:
        axes[0].spines["right"].set_visible(False)
        axes[1].spines["left"].set_visible(False)
        axes[1].tick_params(axis="y", left=False, labelleft=False)
        mark = dict(marker=[(-1, -1.5), (1, 1.5)], markersize=10, linestyle="none", color="black", mec="black",
                    mew=1, clip_on=False)
        axes[0].plot([1], [0], transform=axes[0].transAxes, **mark)
        axes[1].plot([0], [0], transform=axes[1].transAxes, **mark)
    axes[0].set_xlabel("ms from exec to the first response (median)", loc="left")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=8.5)
    title = f"Cold start per function: median of {n_runs} runs, stacked parts add up to the total"
    if broken:
        title += (f"\nx axis broken between {spans[0][1]:.0f} and {spans[1][0]:.0f} ms (same scale both sides): "
                  "one bcrypt verify would dwarf the rest")
    else:
        title += "\nlinear x axis"
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return broken, spans


def _cold_chart(plt, harness, order, path):
    rows = cold_breakdown(harness, order)
    if not harness.get("cold", {}).get("runs"):
        return None, "no cold-start runs in harness.json"
    if not rows:
        return None, "no hello baseline runs in harness.json"
    broken, spans = _draw_cold(plt, rows, path)
    how = (f"the ms axis is broken between {spans[0][1]:.0f} and {spans[1][0]:.0f} ms, same scale on both sides"
           if broken else "linear ms axis")
    return ("Median cold start per function as stacked parts: hello's whole cold start (the baseline); "
            "unexplained, the service's own CPU and waiting, here the median total less the other parts' medians "
            "so that the bar adds up (the table's column is the median of each run's rest, and differs where runs "
            "vary, most where a bcrypt runs beside round trips); the medians of secret fetch, MongoDB handshakes, "
            "queries, publish and index on path (an instant with several round trips outstanding counted once, for "
            "the first of these); one bcrypt verify; " + how + "."), None


# -------------------------------------------------------------------- rename

def _rename_chart(plt, harness, path, bound):
    ren = [r for r in harness.get("rename", []) if r.get("service_ms") is not None and r.get("out_total_ms")]
    if not ren:
        return None, "no rename results in harness.json"
    by_size = {}
    for r in ren:
        by_size.setdefault(r["size"], []).append(r)
    sizes = sorted(by_size)
    # A size of 0 has no place on a log axis.
    sizes = [s for s in sizes if s > 0]
    if not sizes:
        return None, "no rename results at a size above 0"
    series = [
        ("service_ms", "service rename (rename function, event → response)", "#1f78b4", "o", "-", 2.2),
        ("out_total_ms", "\\$out + drop (the original service's copy)", "#e31a1c", "s", "-", 2.2),
        ("server_rename_ms", "renameCollection alone (the server command)", "#7f7f7f", "^", "--", 1.2),
    ]
    fig, ax = plt.subplots(figsize=(8.5, 5.2), layout="constrained")
    right_labels = False
    ax.set_xscale("log")
    ax.set_yscale("log")
    medians = {key: {s: median([r.get(key) for r in by_size[s]]) for s in sizes} for key, *_ in series}
    for key, label, colour, marker, style, width in series:
        pts = [(s, m) for s, m in medians[key].items() if m and m > 0]
        if not pts:
            continue
        ax.plot([s for s, _ in pts], [m for _, m in pts], linestyle=style, marker=marker, color=colour,
                linewidth=width, markersize=6, label=label, zorder=3)
        reps = [(s, r[key]) for s in sizes for r in by_size[s] if r.get(key) and r[key] > 0]
        ax.scatter([s for s, _ in reps], [v for _, v in reps], s=10, color=colour, alpha=0.35, linewidths=0,
                   zorder=2)
        if key != "server_rename_ms":
            other = "out_total_ms" if key == "service_ms" else "service_ms"
            for s, m in pts:
                # The higher of the two main lines is labelled above its
                # point, the lower one below, unless another line's point
                # sits there (within a quarter of a decade): then right of it.
                above = m >= (medians[other][s] or 0)
                near = [v for k, *_ in series if k != key for v in [medians[k][s]] if v and v > 0
                        and (m < v <= m * 10 ** 0.25 if above else m / 10 ** 0.25 <= v < m)]
                if near:
                    right_labels = True
                    place = dict(xytext=(9, 0), ha="left", va="center")
                else:
                    place = dict(xytext=(0, 9 if above else -15), ha="center")
                ax.annotate(f"{_ms(m)} ms", (s, m), textcoords="offset points", fontsize=8.5, color=colour,
                            **place)
    if sizes[0] < bound < sizes[-1]:
        ax.axvline(bound, color="#555555", linestyle=":", linewidth=1)
        ax.text(bound * 1.15, 0.97, f"from {bound:,} documents\nthe service must beat \\$out + drop",
                transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="#555555")
    from matplotlib.ticker import FuncFormatter, NullFormatter
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo / 1.6, hi * (4 if right_labels else 1.6))
    ax.set_xlabel("documents in the tenant's collection (log)")
    ax.set_ylabel("ms, median (log); dots: single repetitions")
    reps = sorted({len(by_size[s]) for s in sizes})
    ax.set_title("Rename against tenant size, log-log: the service against \\$out + drop "
                 f"({'–'.join(str(n) for n in (reps[0], reps[-1]) if n) if len(reps) > 1 else reps[0]} "
                 "repetitions per size)")
    ax.legend(loc="upper left")
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return ("Rename time against tenant size, log-log: median event → response of the rename function, of the "
            "original service's `$out`+`drop` on the same data, and of the server's renameCollection alone; "
            "faint dots are single repetitions."), None


# ---------------------------------------------------------------------- warm

def _warm_chart(plt, wrk, meta, path):
    keys = [k for k in wrk if "-c" in k and k.rsplit("-c", 1)[1].isdigit() and wrk[k].get("p50_us") is not None]
    if not keys:
        return None, "no wrk results (wrk-*.json)"
    keys.sort(key=lambda k: (k.rsplit("-c", 1)[0], int(k.rsplit("-c", 1)[1])))
    pcts = [p for p in PERCENTILES if any(wrk[k].get(p[0]) is not None for k in keys)]
    fig, ax = plt.subplots(figsize=(max(8.5, 1.35 * len(keys) + 1.5), 5.2), layout="constrained")
    ax.set_yscale("log")
    width = 0.8 / len(pcts)
    # Groups of one route stand together, a gap between routes.
    routes = []
    for k in keys:
        if k.rsplit("-c", 1)[0] not in routes:
            routes.append(k.rsplit("-c", 1)[0])
    centers = [i + 0.45 * routes.index(k.rsplit("-c", 1)[0]) for i, k in enumerate(keys)]
    top = 0.0
    for j, (field, label, colour) in enumerate(pcts):
        xs, vs = [], []
        for i, k in enumerate(keys):
            v = wrk[k].get(field)
            if v is not None and v > 0:
                xs.append(centers[i] + (j - (len(pcts) - 1) / 2) * width)
                vs.append(v / 1000)
        bars = ax.bar(xs, vs, width=width * 0.92, color=colour, label=label, zorder=2)
        ax.bar_label(bars, labels=[_ms(v) for v in vs], fontsize=7.5, padding=2)
        top = max([top] + vs)
    names = []
    for k in keys:
        route, conns = k.rsplit("-c", 1)
        w = wrk[k]
        rate = w["requests"] / (w["duration_us"] / 1e6) if w.get("duration_us") else None
        names.append(f"{route}\n{conns} conn{'s' if conns != '1' else ''}"
                     + (f"\n{rate:,.0f} req/s" if rate is not None and rate >= 100 else
                        f"\n{rate:.1f} req/s" if rate is not None else ""))
    ax.set_xticks(centers, names)
    ax.tick_params(axis="x", length=0)
    ax.grid(axis="x", visible=False)
    from matplotlib.ticker import FuncFormatter
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    lo, _ = ax.get_ylim()
    ax.set_ylim(lo, top * 1.6)
    ax.set_ylabel("latency, ms (log)")
    secs = meta.get("wrk_seconds")
    ax.set_title("Warm latency per route: wrk against the local API over loopback"
                 + (f", {secs} s per group" if secs else "") + "; log scale", pad=26)
    ax.legend(ncol=len(pcts), loc="lower center", bbox_to_anchor=(0.5, 1.0), handlelength=1.2)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return ("Warm latency percentiles (p50, p90, p99) per route and connection count from wrk, log scale: a get "
            "is about a millisecond, a login or a create runs one bcrypt verify at the default cost; more connections "
            "queue on the one instance per function."), None


# ---------------------------------------------------------------------- all

def write_all(harness, wrk, meta, docs_dir, order, rename_bound):
    """Draws the three charts into docs_dir; returns {key: Chart} for "cold",
    "rename" and "warm". Never raises for missing or odd data: a chart that
    cannot be drawn is reported as not drawn, with the reason."""
    specs = [
        ("cold", COLD_FILE, "Cold start per function, stacked median breakdown against the hello baseline"),
        ("rename", RENAME_FILE, "Rename time against tenant size, service and $out+drop, log-log"),
        ("warm", WARM_FILE, "Warm latency p50/p90/p99 per route"),
    ]
    try:
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return {key: _not_drawn(docs_dir, file, alt, f"matplotlib is not installed ({e}); `make bench` installs "
                                "it into .venv (scripts/env.sh, PY_TOOLS)") for key, file, alt in specs}
    os.makedirs(docs_dir, exist_ok=True)
    draw = {
        "cold": lambda path: _cold_chart(plt, harness, order, path),
        "rename": lambda path: _rename_chart(plt, harness, path, rename_bound),
        "warm": lambda path: _warm_chart(plt, wrk, meta, path),
    }
    charts = {}
    with matplotlib.rc_context(STYLE):
        for key, file, alt in specs:
            path = os.path.join(docs_dir, file)
            try:
                caption, why = draw[key](path)
            except Exception as e:  # a chart must never cost the report
                plt.close("all")
                caption, why = None, f"drawing failed: {type(e).__name__}: {e}"
            charts[key] = Chart(file, True, alt, caption) if why is None else _not_drawn(docs_dir, file, alt, why)
    return charts


def _not_drawn(docs_dir, file, alt, why):
    try:
        os.remove(os.path.join(docs_dir, file))
    except OSError:
        pass
    return Chart(file, False, alt, why)


# ------------------------------------------------------------------ selftest

def synthetic():
    """A small data set shaped like the harness's and wrk's output."""
    runs = []
    for n in range(3):
        j = 0.1 * n
        runs.append({"fn": "hello", "total_ms": 3.0 + j, "init_ms": 2.7, "timeline": []})
        runs.append({"fn": "get", "total_ms": 22.0 + j, "init_ms": 5.6, "timeline": [
            ["secretsmanager.getsecretvalue", "aws#1", 5.9, 11.8],
            ["isMaster", "mongo#2", 13.2, 16.4],
            ["isMaster", "mongo#3", 17.0, 20.4],
            ["find", "mongo#3", 20.8, 21.8 + j],
        ]})
        runs.append({"fn": "login", "total_ms": 344.0 + j, "init_ms": 6.5, "bcrypt_ref_ms": 299.7, "timeline": [
            ["secretsmanager.getsecretvalue", "aws#1", 6.4, 12.3],
            ["secretsmanager.getsecretvalue", "aws#2", 6.7, 18.1],
            ["isMaster", "mongo#3", 14.2, 14.9],
            ["isMaster", "mongo#4", 15.4, 21.2],
            ["createIndexes", "mongo#4", 21.3, 21.9],
            ["find", "mongo#4", 21.9, 23.5],
            ["awsevents.putevents", "aws#5", 336.0, 341.0],
        ]})
    rename = []
    for size, svc, out in [(1, 21.5, 1.9), (10000, 434.2, 597.1), (100000, 5417.7, 6885.3)]:
        for k in range(2):
            rename.append({"size": size, "service_ms": svc + k, "server_rename_ms": svc * 0.9,
                           "out_ms": out * 0.7, "drop_ms": out * 0.3, "out_total_ms": out + k})
    wrk = {}
    for route, p50 in [("get", 1.13), ("login", 320.8)]:
        for c in (1, 4):
            wrk[f"{route}-c{c}"] = {"requests": int(10000 / p50), "duration_us": 10_000_000, "non2xx": 0,
                                    "socket_errors": 0, "p50_us": int(p50 * c * 1000),
                                    "p90_us": int(p50 * c * 1300), "p99_us": int(p50 * c * 1900),
                                    "max_us": int(p50 * c * 2500), "mean_us": p50 * c * 1000}
    return {"cold": {"runs": runs}, "rename": rename}, wrk, {"wrk_seconds": 10}


def selftest():
    import tempfile
    import xml.etree.ElementTree as ET

    harness, wrk, meta = synthetic()
    order = ["hello", "get", "login"]
    rows = cold_breakdown(harness, order)
    for r in rows:
        assert abs(sum(r["parts"].values()) - r["total"]) < 1e-9, r
    login = next(r for r in rows if r["fn"] == "login")["parts"]
    # The second secret fetch overlaps both handshakes: they count as secret.
    assert abs(login["secret"] - (18.1 - 6.4)) < 1e-9 and abs(login["handshake"] - (21.2 - 18.1)) < 1e-9, login
    assert abs(login["index"] - 0.6) < 1e-9 and login["bcrypt"] == 299.7, login
    with tempfile.TemporaryDirectory() as tmp:
        charts = write_all(harness, wrk, meta, tmp, order, 1000)
        for key, chart in charts.items():
            assert chart.drawn, (key, chart.caption)
            path = os.path.join(tmp, chart.file)
            ET.parse(path)
            with open(path) as f:
                text = f.read()
            assert "<dc:date>" not in text, f"{chart.file} carries a date"
        with open(os.path.join(tmp, COLD_FILE), "rb") as f:
            first = f.read()
        write_all(harness, wrk, meta, tmp, order, 1000)
        with open(os.path.join(tmp, COLD_FILE), "rb") as f:
            assert f.read() == first, "a second drawing of the same data differs"
        # Missing data: nothing drawn, nothing left behind, no exception.
        charts = write_all({}, {}, {}, tmp, order, 1000)
        assert not any(c.drawn for c in charts.values()), charts
        assert not any(os.path.exists(os.path.join(tmp, c.file)) for c in charts.values())
        # Odd data: the chart is skipped with the reason.
        odd = write_all({"cold": {"runs": [{"fn": "hello"}]}}, {}, {}, tmp, order, 1000)
        assert not odd["cold"].drawn and "drawing failed" in odd["cold"].caption, odd["cold"]
    print("charts selftest: 3 charts drawn, deterministic; missing or odd data skipped with a reason")


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
    else:
        sys.exit(__doc__)
