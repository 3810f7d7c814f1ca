"""The results table `make bench` writes (bench/results.md), and helpers every benchmark uses."""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import stack

# --- Report ---------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], list[list[str]], list[str]]] = []
        # (figure, goal, measured, met): the table results.md opens with.
        self.goals: list[tuple[str, str, str, str]] = []

    def goal(self, figure: str, goal: str, measured: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("yes" if met else "**no**")
        self.goals.append((figure, goal, measured, verdict))
        print(f"GOAL {figure}: {goal} | measured {measured} | met: {verdict}")

    def table(self, title: str, header: list[str], rows: list[list[Any]], notes: list[str]) -> None:
        self.sections.append((title, header, [[str(c) for c in r] for r in rows], notes))
        print(f"\n## {title}")
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(str(c) for c in row))
        for note in notes:
            print(f"- {note}")

    def markdown(self, *, started: float, args: argparse.Namespace) -> str:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        pg = subprocess.run(
            ["psql", f"{stack.PG}/postgres", "-Atc", "show server_version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        redis = subprocess.run(
            ["redis-cli", "-u", stack.REDIS, "INFO", "server"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        redis_version = next(
            (line.split(":")[1] for line in redis.splitlines() if line.startswith("redis_version")),
            "?",
        ).strip()
        lines = [
            "# Benchmark results",
            "",
            f"Written by `make bench` ({'--quick' if args.quick else 'full'} run) on "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {time.monotonic() - started:.0f} s.",
            "",
            f"- Machine: {os.cpu_count()} cores ({cpu}), {int(memory) // 1024} MiB RAM, "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, PostgreSQL {pg}, Redis {redis_version}",
            f"- gunicorn: {stack.GUNICORN_WORKERS} workers x {stack.GUNICORN_THREADS} threads "
            "(gthread), serving the portal and the sandbox on the same cores; Celery worker: "
            "prefork, concurrency 2; DJANGO_DEBUG=false (production-like), plain HTTP on loopback",
            f"- Sandbox latency {stack.bench_env()['SANDBOX_LATENCY_MS']} ms per request; "
            f"AGENT_POLL_BATCH=200, AGENT_POLL_CONCURRENCY={stack.POLL_CONCURRENCY}, "
            "AGENT_POLL_FANOUT=4, AGENT_POLL_INTERVAL=5",
            "",
            "The load generator, the portal, the sandbox, PostgreSQL and Redis all share this "
            "machine's cores: every figure is a floor for a deployment that separates them.",
            "",
        ]
        if self.goals:  # first, after the title: every goal and what was measured
            goals = ["## Goals", "", "| figure | goal | measured | met |", "|---|---|---|---|"]
            goals += [f"| {' | '.join(goal)} |" for goal in self.goals]
            lines[4:4] = [*goals, ""]
        for title, header, rows, notes in self.sections:
            lines += [f"## {title}", ""]
            if header:
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(row) + " |" for row in rows]
                lines.append("")
            lines += [f"- {note}" for note in notes]
            lines.append("")
        return "\n".join(lines)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
