"""The report's crashes: checks that raised an exception instead of measuring (outcome "crashed"), counted in the
headline and each exception listed once, with the checks it took down."""

from __future__ import annotations

from ..figures.record_reader import Run


def _names(checks: list[str], limit: int = 10) -> str:
    return ", ".join(f"`{c}`" for c in checks[:limit]) + (f" and {len(checks) - limit} more" if len(checks) > limit
                                                          else "")


def crash_headline(run: Run) -> str:
    """"**N crashed**": checks of this run that raised an exception instead of measuring (a failed run)."""
    crashed, groups = run.crashed, run.crashes()
    return (f"**{len(crashed)} crashed**: {len(crashed)} check{'s' if len(crashed) != 1 else ''} of run {run.run_id} "
            f"raised an exception instead of measuring, on {len(groups)} exception{'s' if len(groups) != 1 else ''} "
            "(see Crashes under Summary); the figures below are this run's, and a crash fails it.")


def crashes(run: Run) -> str:
    """Each exception once: its class, where it was raised, its message, the check that met it first, and the
    later checks that failed on it."""
    lines = []
    for first, figures in run.crashes().items():
        f = figures[0]
        where = f" in {f['origin']} (`{f['at']}`" if f.get("origin") else ""
        where += f"; called from `{f['called_from']}`)" if where and f.get("called_from") else ")" if where else ""
        later = [g.get("check") or g["test_id"] for g in figures if (g.get("check") or g["test_id"]) != first]
        lines.append(f"- `{f.get('error', '?')}`{where}: {f.get('message', '')}; first in `{first}`"
                     + (f", then {len(later)} later check{'s' if len(later) != 1 else ''} failed on it: "
                        f"{_names(later)}" if later else ""))
    return "\n".join(lines)
