"""CPU spent by each process of a running suite during a measured phase, read from /proc.

Written by hand rather than with psutil: the benchmarks need only utime + stime of a few
process trees, PostgreSQL's backends and RabbitMQ's VM, which /proc gives in a few lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command, parent pid, CPU seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command is in parentheses and may itself hold spaces or parentheses.
    command = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return command, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def snapshot(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far per group: each named root with its descendants (gunicorn's
    workers), `postgres` (every backend), `rabbitmq` (its Erlang VM) and `other`."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    group_of_root = {pid: name for name, pid in roots.items()}
    totals: dict[str, float] = {name: 0.0 for name in (*roots, "postgres", "rabbitmq")}
    for pid, (command, _parent, seconds) in table.items():
        group, cursor = None, pid
        while cursor in table and group is None:
            group = group_of_root.get(cursor)
            cursor = table[cursor][1]
        if group is None:
            if command.startswith("postgres"):
                group = "postgres"
            elif command.startswith("beam") or command in ("erl_child_setup", "epmd"):
                group = "rabbitmq"
            else:
                continue
        totals[group] += seconds
    return totals


def per_unit(
    before: dict[str, float],
    after: dict[str, float],
    units: int,
    *,
    idle: dict[str, float] | None = None,
    seconds: float = 0.0,
) -> dict[str, float]:
    """Milliseconds of CPU per unit of work (per creation, per event) for each group, less
    what the group spends anyway when idle (`idle`: CPU seconds per second) over `seconds`."""
    idle = idle or {}
    return {
        name: 1000 * max(0.0, after[name] - before.get(name, 0.0) - idle.get(name, 0.0) * seconds) / units
        for name in after
    }


def describe(costs: dict[str, float]) -> str:
    ranked = sorted(costs.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{name} {ms:.1f}" for name, ms in ranked if ms >= 0.05)
    return f"{sum(costs.values()):.1f} ms in all: {shown}"
