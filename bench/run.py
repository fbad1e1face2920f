"""Benchmark pitstop's point-in-time join against DuckDB, pandas, polars and Feast.

    .venv/bin/python bench/run.py                 # 1Mx1M check, then 1Mx10M and 10Mx10M timings
    .venv/bin/python bench/run.py --quick         # 100k x 1M, one run of every engine
    .venv/bin/python bench/run.py --cases 1Mx10M --engines pitstop,duckdb --reps 5
    .venv/bin/python bench/run.py --cases huge    # 100M spine x 10M features, pitstop only

Each run is its own process (bench/engines.py) on the same Parquet files (bench/generate.py),
with a time limit (killed and recorded as "time-out") and a memory limit (the process tree's
RSS is watched and the run killed and recorded as "OOM" past it). Peak RSS comes from
wait4()'s rusage of that process. Each engine's output is compared row by row with pitstop's.
Results are merged into bench/results.json and rendered to bench/RESULTS.md.
See bench/README.md for what is measured and how the peers' semantics differ.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402
import generate  # noqa: E402
from engines import ENGINES  # noqa: E402

PYTHONS = {"main": Path(sys.executable), "feast": BENCH / ".venv-feast" / "bin" / "python"}
FEAST_HELP = ("python3 -m uv venv bench/.venv-feast && python3 -m uv pip install --python "
              "bench/.venv-feast/bin/python 'feast[duckdb]==0.67.0' pyarrow pandas")
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "RESULTS.md"
OUT = generate.DATA / "out"
LOGS = generate.DATA / "logs"

# name: (spine rows, feature rows, engines allowed (None = all), purpose)
CASES = {
    "quick": (100_000, 1_000_000, None, "smoke test"),
    "1Mx1M": (1_000_000, 1_000_000, None, "correctness check"),
    "1Mx10M": (1_000_000, 10_000_000, None, "timing"),
    "10Mx10M": (10_000_000, 10_000_000, None, "timing"),
    "huge": (100_000_000, 10_000_000, {"pitstop", "pitstop-default"}, "pitstop streaming"),
}
ALIASES = {"check": "1Mx1M"}
DEFAULT_CASES = ["1Mx1M", "1Mx10M", "10Mx10M"]
REFERENCE = "pitstop"
# An engine is compared with the engine of the same semantics.
REFERENCE_OF = {"feast-duckdb-created": "pitstop-default"}
ONLY_IN_CHECKS = {"feast-duckdb-created"}  # run in quick/1Mx1M, or when named in --engines
PIT_DIR: Path | None = None  # set by --pit-rev


def machine() -> dict:
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cores": os.cpu_count(), "ram_gib": round(mem / 2**30, 1), "cpu": cpu,
            "os": platform.platform(), "python": platform.python_version()}
    versions = {}
    for mod in ("duckdb", "pandas", "polars", "pyarrow", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    if PYTHONS["feast"].exists():
        probe = subprocess.run(
            [str(PYTHONS["feast"]), "-c", "import feast, duckdb, dask, ibis; print(feast.__version__, "
             "duckdb.__version__, dask.__version__, ibis.__version__)"],
            capture_output=True, text=True, env={**os.environ, "FEAST_USAGE": "False"})
        if probe.returncode == 0:
            f, d, k, i = probe.stdout.split()
            versions.update({"feast": f, "feast venv duckdb": d, "dask": k, "ibis": i})
    info["versions"] = versions
    return info


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process in its session."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) != root and int(entry.name) != root:  # field 6: session id
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def pit_from_rev(rev: str) -> tuple[Path, str]:
    """Extract pipelines/{pit,errors}.py at git revision `rev` into bench/.data/pit-<sha>/, so
    pitstop can be benchmarked at a fixed revision while the working tree is being edited."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    folder = generate.DATA / f"pit-{sha}"
    package = folder / "pipelines"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    # pit.py imports errors.py and, since it takes its DuckDB memory limit from there,
    # settings.py (which older revisions' pit.py does not need)
    for name in ("pit.py", "errors.py", "settings.py"):
        shown = subprocess.run(["git", "show", f"{sha}:pipelines/{name}"], cwd=ROOT,
                               capture_output=True, text=True)
        if shown.returncode != 0 and name == "settings.py":
            continue
        shown.check_returncode()
        (package / name).write_text(shown.stdout)
    return folder, sha


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have used since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_once(engine: str, spine: Path, features: Path, out: Path, ttl: int, timeout: float,
             mem_limit: int, log: Path) -> dict:
    python = PYTHONS[ENGINES[engine][0]]
    if not python.exists():
        return {"status": "not installed", "peak_rss_bytes": 0,
                "note": f"missing {python}; create it with: {FEAST_HELP}"}
    if engine == "polars" and importlib.util.find_spec("polars") is None:
        return {"status": "not installed", "peak_rss_bytes": 0,
                "note": "polars missing: python3 -m uv pip install --python .venv/bin/python polars"}
    result_file = out.with_suffix(".json")
    for stale in (out, result_file):
        stale.unlink(missing_ok=True)
    cmd = [str(python), str(BENCH / "engines.py"), engine, "--spine", str(spine),
           "--features", str(features), "--out", str(out), "--ttl-seconds", str(ttl),
           "--result", str(result_file)]
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"}
    if PIT_DIR is not None:
        env["PITSTOP_BENCH_PIT_DIR"] = str(PIT_DIR)
    load = os.getloadavg()[0]
    busy0 = _busy_cpu_seconds()
    t0 = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)
    killed = None
    seen_rss = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.perf_counter() - t0
        rss = _tree_rss(proc.pid)
        seen_rss = max(seen_rss, rss)
        if killed is None and elapsed > timeout:
            killed = "time-out"
        elif killed is None and rss > mem_limit:
            killed = "OOM"
        if killed:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak = max(usage.ru_maxrss * 1024, seen_rss)
    run = {"wall_seconds": round(wall, 2), "peak_rss_bytes": peak,
           # CPU time of the whole process (imports and setup too); the load average before
           # the run shows whether something else competed for the cores
           "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "loadavg_1m_before": load}
    # CPU time other processes took from the machine while this run went on (contention)
    run["other_cpu_seconds"] = round(max(0.0, _busy_cpu_seconds() - busy0 - run["cpu_seconds"]), 1)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    if killed == "time-out":
        run.update(status="time-out", note=f"killed after {timeout:.0f} s")
    elif killed == "OOM":
        run.update(status="OOM", note=f"killed at {mem_limit / 2**30:.0f} GiB RSS")
    elif proc.returncode == 0 and result_file.exists():
        inner = json.loads(result_file.read_text())
        run.update(status="ok", seconds=round(inner["seconds"], 3), rows=inner["rows"])
        if "shim" in inner:
            run["note"] = inner["shim"]
    elif proc.returncode == -signal.SIGKILL:
        run.update(status="OOM", note="SIGKILL from outside (kernel OOM killer)")
    elif any("MemoryError" in line or "OutOfMemory" in line or "Out of Memory" in line
             for line in tail):
        run.update(status="OOM", note=tail[-1][:300])
    else:
        run.update(status="crash", note=(tail[-1] if tail else f"exit {proc.returncode}")[:300])
    return run


def fmt_bytes(n: float | None) -> str:
    return "–" if not n else f"{n / 2**30:.2f} GiB"


def fmt_rate(n: float | None) -> str:
    if not n:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def summarize(case: str, spine_rows: int, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    entry: dict = {"runs": runs, "reps": len(ok)}
    if ok and len(ok) == len(runs):
        entry["status"] = "ok"
    elif ok:
        entry["status"] = "ok (some runs failed)"
    else:
        entry["status"] = runs[-1]["status"] if runs else "not run"
    entry["peak_rss_bytes"] = max((r["peak_rss_bytes"] for r in runs), default=None)
    if ok:
        entry["median_seconds"] = round(statistics.median(r["seconds"] for r in ok), 3)
        entry["best_seconds"] = round(min(r["seconds"] for r in ok), 3)
        entry["rows_per_s"] = round(spine_rows / entry["median_seconds"])
        entry["output_rows"] = ok[-1]["rows"]
    notes = sorted({r["note"] for r in runs if r.get("note")})
    if notes:
        entry["note"] = "; ".join(notes)
    return entry


def table(case: dict) -> str:
    head = ("| engine | status | runs | median s | best s | peak RSS | spine rows/s | × pitstop | "
            "× duckdb | output vs reference |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    duckdb_median = case["engines"].get("duckdb", {}).get("median_seconds")
    for name, e in case["engines"].items():
        ratio = e.get("ratio_to_pitstop")
        to_duckdb = (e["median_seconds"] / duckdb_median
                     if duckdb_median and "median_seconds" in e else None)
        cmp = e.get("comparison_summary", "–")
        if cmp.startswith(name + ": "):
            cmp = cmp[len(name) + 2:]
        median = f"{e['median_seconds']:.2f}" if "median_seconds" in e else "–"
        oks = [r["seconds"] for r in e.get("runs", []) if r.get("status") == "ok"]
        best = f"{min(oks):.2f}" if oks else "–"
        lines.append(f"| {name} | {e['status']} | {e['reps']} | {median} | {best} | "
                     f"{fmt_bytes(e.get('peak_rss_bytes'))} | {fmt_rate(e.get('rows_per_s'))} | "
                     f"{'–' if ratio is None else f'{ratio:.2f}'} | "
                     f"{'–' if to_duckdb is None else f'{to_duckdb:.2f}'} | {cmp} |")
    return "\n".join(lines)


def carried_over(case: dict) -> list[str]:
    """Engines whose figures come from an earlier run than the case's latest one (a run with
    --engines keeps the others' results): their ratios compare times of different runs."""
    engines = case["engines"]
    if not any("run_at" in e for e in engines.values()):
        return []  # results from before run_at was recorded
    return [name for name, e in engines.items() if e.get("run_at") != case["updated"]]


def render(results: dict) -> str:
    m = results["machine"]
    p = results["params"]
    out = ["# Point-in-time join benchmark results", "",
           f"Generated by `bench/run.py` (last update {results['updated']}). "
           "See `bench/README.md` for what is measured and the peers' semantics.", "",
           "## Machine", "",
           f"- {m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['os']}, "
           f"Python {m['python']}",
           "- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "",
           "## Setup", "",
           f"- {p['entities']:,} entities, feature event times over {p['days']} days, "
           f"~{p['correction_share']:.0%} of feature rows are later corrections of an existing "
           f"(entity, event time), TTL {p['ttl_seconds'] // 3600} h, seed {p['seed']}.",
           "- Seconds: median of the runs listed, timed inside the engine process from reading "
           "the Parquet inputs to the written Parquet output (imports and Feast's `apply` "
           "excluded). Peak RSS: the engine process (max over runs). rows/s: spine rows / "
           "median seconds. × pitstop: median / pitstop's median (known_at_time=False). "
           "× duckdb: median / raw DuckDB's median.",
           f"- Limits: {p['timeout_seconds'] / 60:.0f} min per run (then `time-out`), "
           f"{p['mem_limit_gib']:.0f} GiB RSS (then `OOM`). An engine whose first run of a case took "
           f"longer than `--slow-seconds` is run once only in that case (the runs column).",
           "- best s: the fastest run. The machine was shared with another developer's test "
           "runs (Airflow, MLflow); `results.json` keeps per run `other_cpu_seconds`, the CPU "
           "time other processes used meanwhile. Runs with a large value ran on less than two "
           "cores, so compare best s where medians look off.",
           "- Reference for the output comparison: pitstop with known_at_time=False, except "
           "feast-duckdb-created which is compared with pitstop-default (same semantics).", ""]
    for name, case in results["cases"].items():
        out += [f"## {name}: {case['spine_rows']:,} spine × {case['feature_rows']:,} feature "
                f"rows ({case['purpose']})", "",
                f"Run {case['updated']}; engines whose first run took over "
                f"{case.get('slow_seconds', p['slow_seconds']):.0f} s were run once.", "",
                table(case), ""]
        if old := carried_over(case):
            out += [f"From an earlier run than this one, so their × figures compare times of "
                    f"different runs: {', '.join(old)}.", ""]
        notes = {e: v["note"] for e, v in case["engines"].items() if v.get("note")}
        sources = {e: v["pit_source"] for e, v in case["engines"].items() if v.get("pit_source")}
        if sources:
            out += ["pitstop code benchmarked: " + ", ".join(f"{e}: {src}" for e, src in
                                                         sources.items()), ""]
        if notes:
            out += ["Notes:", ""] + [f"- {e}: {n}" for e, n in notes.items()] + [""]
    notes_file = BENCH / "OBSERVATIONS.md"  # hand-written analysis, appended verbatim
    if notes_file.exists():
        out += [notes_file.read_text().strip(), ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 100k x 1M, 1 run per engine")
    ap.add_argument("--cases", help=f"comma list of {', '.join(CASES)} (check = 1Mx1M); "
                    f"default {','.join(DEFAULT_CASES)}")
    ap.add_argument("--engines", help=f"comma list of {', '.join(ENGINES)}; default all")
    ap.add_argument("--reps", type=int, default=3, help="runs per engine and case (median)")
    ap.add_argument("--slow-seconds", type=float, default=240,
                    help="an engine whose first run takes longer is run once in that case")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--mem-limit-gib", type=float, default=18, help="RSS limit per run")
    ap.add_argument("--ttl-hours", type=int, default=24)
    ap.add_argument("--seed", type=int, default=generate.Params.seed)
    ap.add_argument("--pit-rev", help="benchmark pipelines/pit.py as of this git revision "
                    "(e.g. HEAD) instead of the working tree")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite RESULTS.md from results.json (and bench/OBSERVATIONS.md)")
    a = ap.parse_args()
    if a.render:
        results = json.loads(RESULTS_JSON.read_text())
        RESULTS_MD.write_text(render(results))
        print(f"wrote {RESULTS_MD.relative_to(ROOT)}")
        return
    global PIT_DIR
    pit_source = "working tree"
    if a.pit_rev:
        PIT_DIR, sha = pit_from_rev(a.pit_rev)
        pit_source = f"git {sha}"

    if a.quick:
        cases, reps = ["quick"], 1
    else:
        cases = [ALIASES.get(c, c) for c in a.cases.split(",")] if a.cases else DEFAULT_CASES
        reps = a.reps
    if bad := [c for c in cases if c not in CASES]:
        ap.error(f"unknown cases {bad}; choose from {list(CASES)}")
    named = a.engines.split(",") if a.engines else None
    if named and (bad := [e for e in named if e not in ENGINES]):
        ap.error(f"unknown engines {bad}; choose from {list(ENGINES)}")
    params = generate.Params(seed=a.seed)
    ttl = a.ttl_hours * 3600
    mem_limit = int(a.mem_limit_gib * 2**30)

    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"cases": {}}
    results["machine"] = machine()
    results["params"] = {**params.__dict__, "ttl_seconds": ttl, "timeout_seconds": a.timeout,
                         "mem_limit_gib": a.mem_limit_gib, "slow_seconds": a.slow_seconds}
    print(f"machine: {results['machine']['cores']} cores, {results['machine']['ram_gib']} GiB",
          flush=True)

    for case in cases:
        spine_rows, feature_rows, allowed, purpose = CASES[case]
        check = purpose in {"smoke test", "correctness check"}
        engines = [e for e in (named or ENGINES)
                   if (allowed is None or e in allowed)
                   and (named or check or e not in ONLY_IN_CHECKS)]
        # the reference runs first so every other engine can be compared with it
        engines.sort(key=lambda e: (e != REFERENCE, e != "pitstop-default"))
        spine, features = generate.case_files(spine_rows, feature_rows, params)
        case_reps = 1 if purpose == "correctness check" else reps
        print(f"\n== {case}: {spine_rows:,} spine x {feature_rows:,} features ({purpose}), "
              f"{len(engines)} engines, up to {case_reps} runs each", flush=True)
        (OUT / case).mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        runs: dict[str, list[dict]] = {e: [] for e in engines}
        for rep in range(case_reps):
            for engine in engines:
                done = runs[engine]
                if done and (done[0]["status"] != "ok"
                             or done[0].get("seconds", 0) > a.slow_seconds):
                    continue  # failed or slow: one run is what this case gets
                run = run_once(engine, spine, features, OUT / case / f"{engine}.parquet", ttl,
                               a.timeout, mem_limit, LOGS / f"{case}_{engine}_{rep}.log")
                done.append(run)
                shown = (f"{run['seconds']:.2f} s" if run["status"] == "ok"
                         else run["status"].upper())
                print(f"  run {rep + 1} {engine:22s} {shown:>10s}  peak RSS "
                      f"{fmt_bytes(run['peak_rss_bytes'])}  other CPU "
                      f"{run.get('other_cpu_seconds', 0):.0f} s"
                      + (f"  ({run['note']})" if run.get("note") and run["status"] != "ok"
                         else ""), flush=True)

        entry = {"spine_rows": spine_rows, "feature_rows": feature_rows, "purpose": purpose,
                 "updated": dt.datetime.now().isoformat(timespec="seconds"),
                 "slow_seconds": a.slow_seconds, "engines": {}}
        previous = results["cases"].get(case, {}).get("engines", {})
        for engine in engines:
            entry["engines"][engine] = summarize(case, spine_rows, runs[engine])
            entry["engines"][engine]["run_at"] = entry["updated"]
            if engine.startswith("pitstop"):
                entry["engines"][engine]["pit_source"] = pit_source
        # keep earlier results of engines not run this time
        for engine, e in previous.items():
            entry["engines"].setdefault(engine, e)
        base = entry["engines"].get(REFERENCE, {})
        for engine, e in entry["engines"].items():
            e.pop("ratio_to_pitstop", None)
            if "median_seconds" in e and base.get("median_seconds"):
                e["ratio_to_pitstop"] = round(e["median_seconds"] / base["median_seconds"], 2)
        # compare every engine's latest output on disk with the reference's latest output
        print(f"\n-- {case}: output compared with the reference (pitstop, known_at_time=False)")
        for engine, e in entry["engines"].items():
            ref = REFERENCE_OF.get(engine, REFERENCE)
            ref_out, out = OUT / case / f"{ref}.parquet", OUT / case / f"{engine}.parquet"
            e.pop("comparison", None)
            e.pop("comparison_summary", None)
            if engine == ref or not e.get("reps") or not ref_out.exists() or not out.exists():
                continue
            c = compare.compare(str(ref_out), str(out), str(spine))
            e["comparison"] = {"reference": ref, **c}
            text = compare.summary(engine, c)
            if ref != REFERENCE:
                text += f" (reference: {ref})"
            e["comparison_summary"] = text
            print("  " + text, flush=True)
        if REFERENCE in entry["engines"]:
            entry["engines"][REFERENCE]["comparison_summary"] = "(reference)"
        results["cases"][case] = entry
        results["updated"] = entry["updated"]
        RESULTS_JSON.write_text(json.dumps(results, indent=1) + "\n")
        RESULTS_MD.write_text(render(results))
        print(f"\n{table(entry)}\n", flush=True)
    print(f"wrote {RESULTS_JSON.relative_to(ROOT)} and {RESULTS_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
