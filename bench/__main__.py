"""Run the benchmarks: ``python -m bench [--quick] [--only NAME ...] [--out PATH]``.

Each benchmark runs in its own child process (``--child NAME``), one after the other, so that
peak memory figures are its own and one that crashes or hangs does not take the others down.
The parent prints one table and writes the JSON results (``bench/results.json`` by default,
``bench/results.quick.json`` with ``--quick``). With ``--only``, the benchmarks that ran are
merged into an existing results file of the same mode (``merge_results``): the others' entries
are kept as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.adapters import adapt
from bench.common import Skipped, cpu_count, figure

HERE = Path(__file__).resolve().parent

#: Benchmark name -> module; run in this order.
BENCHMARKS: dict[str, str] = {
    "store": "bench.bench_store",
    "slots": "bench.bench_slots",
    "pressure": "bench.bench_pressure",
    "prepare": "bench.bench_prepare",
    "simulator": "bench.bench_simulator",
    "packing": "bench.bench_packing",
    "cluster": "bench.bench_cluster",
    # Last: it leaves a detached ``rm -rf`` of 40,000 files running behind it.
    "scale": "bench.bench_scale",
}

#: Wall-clock limit of one benchmark's child process, seconds.
TIMEOUT_S = {"quick": 45.0, "full": 300.0}
#: Longer limits for benchmarks that need them (full mode): one job per file for 10,000
#: files is the packing benchmark's baseline, and it is slow by nature.
FULL_TIMEOUT_S = {"packing": 900.0, "cluster": 600.0}
#: Left out of ``--quick`` unless named with ``--only``: the cluster benchmark starts
#: PostgreSQL and three daemons and waits out a lease (~20 s), too much for the quick minute.
NOT_QUICK = ("cluster",)
#: Statuses that do not fail the run: ``skipped`` is a benchmark that cannot run here
#: (``bench.common.Skipped``: e.g. no PostgreSQL), reported with its reason.
PASSING = ("ok", "skipped")


def _child(name: str, quick: bool, out: Path) -> int:
    """Run one benchmark in this process and write its normalised result to ``out``."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as exc:
        body: dict[str, Any] = {"status": "unavailable", "error": str(exc), "figures": []}
    else:
        try:
            body = {"status": "ok", **adapt(name, module.run(quick))}
        except Skipped as exc:
            body = {"status": "skipped", "error": str(exc), "figures": []}
        except Exception as exc:  # noqa: BLE001 - reported in the results, run goes on
            body = {
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "figures": [],
            }
    body["seconds"] = round(time.perf_counter() - t0, 2)
    out.write_text(json.dumps(body, indent=2, default=str))
    return 0


def _run_one(name: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", "--child", name, "--child-out", str(out)]
        if quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        # Own process group: on a timeout the child's own children (simulator, daemon) go too.
        proc = subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            limit = TIMEOUT_S["quick"] if quick else FULL_TIMEOUT_S.get(name, TIMEOUT_S["full"])
            _, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {
                "status": "timeout",
                "error": f"no result after {exc.timeout:.0f} s",
                "figures": [],
                "seconds": round(time.perf_counter() - t0, 2),
            }
        if out.is_file():
            result: dict[str, Any] = json.loads(out.read_text())
        else:
            result = {
                "status": "error",
                "error": f"child exited {proc.returncode} without a result",
                "figures": [],
                "seconds": round(time.perf_counter() - t0, 2),
            }
        if proc.returncode != 0 or result["status"] not in PASSING:
            result["stderr_tail"] = stderr[-3000:]
        return result


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


def render_table(results: dict[str, Any]) -> str:
    """Render every benchmark's figures as one fixed-width text table."""
    header = ("benchmark", "figure", "value", "unit", "baseline", "ratio", "target", "met")
    rows: list[tuple[str, ...]] = []
    for name, bench in results["benchmarks"].items():
        if bench["status"] != "ok":
            rows.append((name, f"[{bench['status']}] {bench.get('error', '')[:70]}",
                         "", "", "", "", "", ""))
            continue
        for f in bench["figures"]:
            base = _fmt(f["baseline"])
            if f.get("baseline_name") and f["baseline"] is not None:
                base = f"{base} ({f['baseline_name']})"
            rows.append((name, f["name"], _fmt(f["value"]), f["unit"], base,
                         _fmt(f["ratio"]), f["target"] or "", _fmt(f["met"])))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    """Render the figures as a Markdown table (for docs/performance.md and the README)."""
    lines = ["| benchmark | figure | value | unit | baseline | ratio | target | met |",
             "| --- | --- | ---: | --- | --- | ---: | --- | --- |"]
    for name, bench in results["benchmarks"].items():
        if bench["status"] != "ok":
            lines.append(f"| {name} | *{bench['status']}*: {bench.get('error', '')[:80]} "
                         "| | | | | | |")
            continue
        for f in bench["figures"]:
            base = _fmt(f["baseline"])
            if f.get("baseline_name") and f["baseline"] is not None:
                base = f"{base} ({f['baseline_name']})"
            cells = [name, f["name"], _fmt(f["value"]), f["unit"], base, _fmt(f["ratio"]),
                     f["target"] or "", _fmt(f["met"])]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def add_headroom(results: dict[str, Any]) -> None:
    """Add to the simulator's figures what the scheduling runs asked of it (issue 8, item 6).

    Demand is the average real-time rate of the busiest leadflow or naive run (calls per real
    second, upload MB per real second); capacity is what the simulator benchmark measured.
    """
    benches = results["benchmarks"]
    sim = benches.get("simulator")
    if not sim or sim["status"] != "ok":
        return
    capacity = {f["name"]: f["value"] for f in sim["figures"]}
    calls = mb = 0.0
    for name in ("slots", "pressure"):
        bench = benches.get(name)
        if not bench or bench["status"] != "ok":
            continue
        details = bench["details"]
        runs = [details[k] for k in ("leadflow", "naive") if k in details]
        for label in ("small", "big"):
            if label in details:
                runs += [details[label]["leadflow"], details[label]["naive"]]
                wall = min(details[label][k]["run"]["wall_s"] for k in ("leadflow", "naive"))
                mb = max(mb, details[label]["upload_mb"] / wall)
        for run in runs:
            calls = max(calls, (run["api_calls"] + run["identity_calls"]) / run["run"]["wall_s"])
    if calls and capacity.get("status calls per second"):
        sim["figures"].append(figure(
            "busiest run's call rate", calls, "calls/s (real)",
            baseline=capacity["status calls per second"], baseline_name="simulator capacity",
            target="<= 0.5", target_on="ratio",
            note="the simulator never the bottleneck: at most half its measured capacity"))
    if mb and capacity.get("upload parse+validate speed"):
        sim["figures"].append(figure(
            "busiest run's upload rate", mb, "MB/s (real)",
            baseline=capacity["upload parse+validate speed"], baseline_name="simulator capacity",
            target="<= 0.5", target_on="ratio",
            note="upload MB of the big workload / its real duration"))


def merge_results(previous: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """An ``--only`` run's results merged into an earlier results file of the same mode.

    The benchmarks that ran replace their entries (each one carrying ``run``: the
    ``generated_at``, ``command`` and ``host`` of the run that measured it); every other entry,
    and the file's own ``generated_at``/``command``/``host``, stay as they were.

    Args:
        previous: the results file's content.
        fresh: this run's results.
    """
    benches = dict(previous["benchmarks"])
    provenance = {key: fresh[key] for key in ("generated_at", "command", "host")}
    for name, bench in fresh["benchmarks"].items():
        benches[name] = {**bench, "run": provenance}
    order = [n for n in BENCHMARKS if n in benches] + [n for n in benches if n not in BENCHMARKS]
    return {**previous, "benchmarks": {n: benches[n] for n in order}}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmarks, print the table, write the JSON; exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes, about a minute; leaves out {', '.join(NOT_QUICK)}")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}; "
                             "merged into an existing results file of the same mode")
    parser.add_argument("--out", type=Path, help="JSON results path")
    parser.add_argument("--markdown", type=Path, metavar="RESULTS",
                        help="print the figures of a results file as a Markdown table and exit")
    parser.add_argument("--child", choices=sorted(BENCHMARKS), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, args.child_out)
    if args.markdown:
        print(render_markdown(json.loads(args.markdown.read_text())))
        return 0

    names = args.only or [n for n in BENCHMARKS if not (args.quick and n in NOT_QUICK)]
    out = args.out or HERE / ("results.quick.json" if args.quick else "results.json")
    results: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "command": "python -m bench" + (" --quick" if args.quick else "")
                   + "".join(f" --only {n}" for n in args.only or ()),
        "host": {
            "cpus": cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "benchmarks": {},
    }
    t0 = time.perf_counter()
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results["benchmarks"][name] = _run_one(name, args.quick)
        bench = results["benchmarks"][name]
        print(f"  {name}: {bench['status']} in {bench.get('seconds', 0):.1f} s",
              file=sys.stderr, flush=True)
    add_headroom(results)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["host"]["load_average_at_end"] = list(os.getloadavg())
    written, merged = results, ""
    if args.only and out.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            previous = json.loads(out.read_text())
            if previous["mode"] == results["mode"]:
                written = merge_results(previous, results)
                merged = f" (merged: other benchmarks as of {previous['generated_at']})"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(written, indent=2) + "\n")
    tmp.replace(out)
    print(render_table(results))
    load = results["host"]["load_average_at_end"][1]
    print(f"\n{results['mode']} run, {results['seconds']} s on {results['host']['cpus']} CPUs"
          f" (load average {load:.1f}); results in {out}{merged}")
    failed = [n for n, b in results["benchmarks"].items() if b["status"] not in PASSING]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
