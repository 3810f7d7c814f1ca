"""`make bench`: every benchmark of issue 9 against the real stack, one table, bench/results.md.

    python -m bench.run            # N = 1,000, 5,000, 10,000 (about 8 minutes)
    python -m bench.run --quick    # N = 1,000 and shorter runs (about 4 minutes)
    python -m bench.run --only poller,api

Each benchmark is bounded in time; one that fails is reported as failed and the others still run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import stack
from bench.dashboard import bench_dashboard
from bench.http import bench_api, bench_pages
from bench.poller import bench_poller
from bench.propagation import bench_propagation
from bench.ratelimit import bench_ratelimit
from bench.report import Report
from bench.standin_poller import bench_poller_standin

RESULTS = Path(__file__).resolve().parent / "results.md"
ALL = ("poller", "poller-sandbox", "ratelimit", "propagation", "api", "pages", "dashboard")


# --- Main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1,000 and shorter runs")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated: {','.join(ALL)}")
    parser.add_argument("--sizes", default="", help="poller sizes, e.g. 1000,5000")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="where to write the results (default bench/results.md)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in logs
    only = set(args.only.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s] or (
        [1000] if args.quick else [1000, 5000, 10000]
    )
    started = time.monotonic()
    print("Preparing the database portal_bench, Redis db 11 and static files...")
    stack.database_reset()
    stack.django_setup()
    report = Report()
    if "poller" in only:
        # First, alone on the machine: its own workers, beat and stand-in (no gunicorn, no
        # other worker to take its tasks).
        print(f"\n=== poller against the stand-in ({time.monotonic() - started:.0f} s so far)")
        try:
            bench_poller_standin(
                report,
                [5000] if args.quick else [5000, 10000],
                sustained_seconds=10 if args.quick else 20,
            )
        except Exception as error:  # report it, run the others
            traceback.print_exc()
            report.table("poller: FAILED", [], [], [f"{type(error).__name__}: {error}"])
    gunicorn = stack.gunicorn_start()
    worker = stack.worker_start()
    benchmarks: list[tuple[str, Callable[[], None]]] = [
        ("poller-sandbox", lambda: bench_poller(report, sizes, gunicorn, worker)),
        ("ratelimit", lambda: bench_ratelimit(report, 65 if args.quick else 130)),
        ("propagation", lambda: bench_propagation(report, 100)),
        ("api", lambda: bench_api(report, 8 if args.quick else 15, 10_000, gunicorn)),
        ("pages", lambda: bench_pages(report, 8 if args.quick else 15, 10_000)),
        ("dashboard", lambda: bench_dashboard(report.table, requests=10 if args.quick else 20)),
    ]
    with stack.running(worker, gunicorn):
        for name, benchmark in benchmarks:
            if name not in only:
                continue
            print(f"\n=== {name} ({time.monotonic() - started:.0f} s so far)", flush=True)
            print(f"(tasks waiting in the queue: {stack.queue_length()})", flush=True)
            try:
                benchmark()
            except Exception as error:  # report it, run the others
                traceback.print_exc()
                report.table(f"{name}: FAILED", [], [], [f"{type(error).__name__}: {error}"])
    args.output.write_text(report.markdown(started=started, args=args))
    print(f"\nWrote {args.output} in {time.monotonic() - started:.0f} s")
    _ = statistics  # (kept for ad-hoc analysis)


if __name__ == "__main__":
    main()
