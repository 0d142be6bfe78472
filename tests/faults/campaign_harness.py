"""The fault campaign's machinery (tests/faults/campaign.py runs it): a `Case` is one hostile command line with
what it sets up first and what must (not) be left on disk after; `run_case` runs it in a fresh folder and gives
the verdict. Verdicts are about edgeseg, never about timing or the harness:

    ok              the expected outcome: a refusal in one `edgeseg CMD: error:` line with exit 2, or a success
    false success   exit 0 where a refusal was due, or a refusal/success that left on disk what it must not
    hang            still running at the case's timeout (then killed with its process group)
    crash           killed by a signal (a segfault, an abort) without the case killing it
    internal error  exit 1, a traceback or `internal error` on stderr
    wrong           any other exit code or message shape, or a rerun (after a kill) that failed
    harness         the case's own setup or check raised: a campaign bug, not a verdict on edgeseg
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CRASH_EXIT_CODE = 137  # edgeseg.atomic.crash_point's exit, as kill -9 in a shell
VERDICTS = ("ok", "false success", "hang", "crash", "internal error", "wrong", "harness")

PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar
Setup = Callable[[Path], object]
Check = Callable[[Path, int, str, str], "str | None"]  # (work, exit code, stderr, stdout) -> a problem, or None


@dataclass(frozen=True)
class Kit:
    """Where a case's inputs come from: the python to run, the tree under test (an installed layout) and the
    shared assets built from it (tests/faults/campaign_assets.py)."""

    python: str
    layout: Path
    assets: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.layout), "TQDM_DISABLE": "1"}

    def a(self, name: str) -> str:
        """The path of one asset, as a command-line argument."""
        return str(self.assets / name)

    def edgeseg(self, argv: Sequence[object], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run edgeseg to completion (a case's setup: an earlier run to collide with)."""
        return subprocess.run([self.python, "-m", "edgeseg", *map(str, argv)], env=self.env, cwd=cwd,
                              capture_output=True, text=True, check=False, timeout=600)


@dataclass
class Case:
    family: str
    name: str
    argv: Callable[[Path], list[str]] | list[str]
    expect: str = "refuse"  # refuse | ok | killed | any (refusing and succeeding are both right; see the case)
    setup: Setup | None = None
    check: Check | None = None  # what is on disk after the run (or the kill), before any rerun
    timeout: float = 120
    env: dict[str, str] = field(default_factory=dict)  # for the first run only, never the rerun
    kill_after: float | None = None  # SIGKILL the run after this many seconds
    then: Callable[[Path], list[str]] | None = None  # a rerun after the kill, without `env`: must exit 0
    then_check: Check | None = None  # what is on disk after the rerun (a killed run's leftovers cleaned up)
    concurrent: bool = False  # run argv twice at once: one must succeed, the other be refused
    python: str | None = None  # run this python snippet instead of the CLI (argv passed as sys.argv[1:])


@dataclass
class Outcome:
    results: list[tuple[int, str, str]]  # (exit code, stdout, stderr) per process
    hang: bool
    problem: str | None  # what `check` found
    rerun: tuple[int, str] | None  # (exit code, stderr)
    rerun_problem: str | None  # what `then_check` found


def _run(kit: Kit, case: Case, work: Path) -> Outcome:
    argv = case.argv(work) if callable(case.argv) else list(case.argv)
    cmd = [kit.python, "-c", case.python, *argv] if case.python else [kit.python, "-m", "edgeseg", *argv]
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=work, env={**kit.env, **case.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
             for _ in range(2 if case.concurrent else 1)]
    hang, results = False, []
    for proc in procs:
        try:
            remaining = max(1.0, (case.kill_after or case.timeout) - (time.monotonic() - start))
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            hang = hang or case.kill_after is None
        results.append((proc.returncode, out, err))
    first_code, first_out, first_err = results[0]
    problem = case.check(work, first_code, first_err, first_out) if case.check and not hang else None
    rerun, rerun_problem = None, None
    if case.then is not None and not hang:
        done = subprocess.run([kit.python, "-m", "edgeseg", *case.then(work)], cwd=work, env=kit.env,
                              capture_output=True, text=True, timeout=case.timeout, check=False)
        rerun = (done.returncode, done.stderr)
        if case.then_check:
            rerun_problem = case.then_check(work, done.returncode, done.stderr, done.stdout)
    return Outcome(results, hang, problem, rerun, rerun_problem)


def error_lines(err: str) -> list[str]:
    """The error lines (a command's notes, e.g. predict's 'skipped ...', are not errors)."""
    lines = err.replace("\r", "\n").splitlines()
    return [line for line in lines if line.startswith("edgeseg ") and ": error: " in line]


def _message(err: str) -> str:
    """The last error line, else the last line that is not a progress bar."""
    errors = error_lines(err)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]
    return errors[-1] if errors else (lines or [""])[-1][:200]


def verdict(case: Case, outcome: Outcome) -> tuple[str, str]:
    """(verdict, the message it rests on)."""
    if outcome.hang:
        return "hang", ""
    messages = []
    for code, _, err in outcome.results:
        messages.append(_message(err))
        if (code < 0 or code in (134, 139)) and case.kill_after is None:
            return "crash", messages[-1]
        if "Traceback" in err or "internal error" in err or code == 1:
            return "internal error", messages[-1]
    codes = [code for code, _, _ in outcome.results]
    message = " | ".join(messages)
    first_code, _, first_err = outcome.results[0]
    problem = outcome.problem
    if case.concurrent:
        if sorted(codes) != [0, 2]:
            return ("false success" if codes == [0, 0] else "wrong"), f"exit codes {codes}: {message}; {problem or ''}"
    elif case.expect == "refuse":
        if first_code == 0:
            return "false success", message
        if first_code != 2 or len(error_lines(first_err)) != 1:
            return "wrong", f"exit {first_code}: {message}"
    elif first_code not in {"ok": (0,), "any": (0, 2)}.get(case.expect, (first_code,)):
        return "wrong", f"exit {first_code}: {message}"
    elif case.expect == "killed" and case.env and first_code != CRASH_EXIT_CODE:
        return "wrong", f"exit {first_code}, not the kill point's {CRASH_EXIT_CODE}: the moment was never reached"
    if outcome.rerun is not None and outcome.rerun[0] != 0:
        return "wrong", f"rerun exit {outcome.rerun[0]}: {_message(outcome.rerun[1])}"
    if outcome.rerun_problem:
        return "wrong", f"{message}; on disk after the rerun: {outcome.rerun_problem}"
    if problem:
        return ("false success" if 0 in codes else "wrong"), f"{message}; on disk: {problem}"
    return "ok", message


def run_case(kit: Kit, case: Case, work: Path) -> dict:
    """Run one case in `work` (emptied first) and return its record for results.json."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.monotonic()
    codes: list[int] = []
    try:
        if case.setup:
            case.setup(work)
        outcome = _run(kit, case, work)
        codes = [code for code, _, _ in outcome.results]
        result, message = verdict(case, outcome)
    except Exception as exc:  # the harness itself: a setup, a check or a rerun that raised
        result, message = "harness", repr(exc)[:300]
    finally:
        _unmount_under(work)
    return {"family": case.family, "case": case.name, "verdict": result, "message": message, "exit_codes": codes,
            "seconds": round(time.monotonic() - start, 1), "left": tree(work)[:12]}


def _unmount_under(work: Path) -> None:
    for path in sorted(work.rglob("*"), reverse=True) if work.exists() else []:
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------------- setups and checks


def tree(root: Path) -> list[str]:
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def copy(src: Path, name: str | None = None) -> Setup:
    def setup(w: Path) -> None:
        dst = w / (name or src.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    return setup


def chain(*setups: Setup) -> Setup:
    def setup(w: Path) -> None:
        for one in setups:
            one(w)
    return setup


def fifo(name: str) -> Setup:
    def setup(w: Path) -> None:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).unlink(missing_ok=True)
        os.mkfifo(w / name)
    return setup


def tmpfs(name: str, size: str = "200k") -> Setup:
    """A small RAM disk at `name`: a full disk on cue (needs root; the mount is undone after the case)."""
    def setup(w: Path) -> None:
        (w / name).mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(w / name)], check=True)
    return setup


def absent(*names: str) -> Check:
    """None of `names` is left (an empty folder counts as absent)."""
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        left = [n for n in names if (w / n).exists() and (not (w / n).is_dir() or any((w / n).iterdir()))]
        return f"left {left}" if left else None
    return check


def empty(name: str) -> Check:
    """Nothing at all is left under `name` (a mount point that must stay empty)."""
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        return f"left {tree(w / name)}" if tree(w / name) else None
    return check


def stdout_has(*want: str, absent_text: Sequence[str] = ()) -> Check:
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        missing = [t for t in want if t not in out]
        extra = [t for t in absent_text if t in out]
        return ((f"stdout lacks {missing}" if missing else "") + (f" stdout says {extra}" if extra else "")) or None
    return check


def no_half_set(folder: str) -> Check:
    """A scene folder is absent, empty, or a whole set (its labels.txt is written last)."""
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        have = {p.name for p in (w / folder).iterdir()} if (w / folder).is_dir() else set()
        return f"half set without labels.txt: {sorted(have)}" if have and "labels.txt" not in have else None
    return check


def only(folder: str, allowed: set[str]) -> Check:
    """`folder` holds nothing but `allowed` names."""
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        extra = sorted(p.name for p in (w / folder).iterdir() if p.name not in allowed) if (w / folder).exists() else []
        return f"left {extra}" if extra else None
    return check


def count_in(folder: str, expected: int) -> Check:
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        found = len(list((w / folder).iterdir())) if (w / folder).is_dir() else 0
        return None if found == expected else f"{found} files in {folder}, not {expected}"
    return check
