"""The issue-30 fault campaign: 335 hostile command lines against an installed edgeseg, each run in a fresh
folder, judged on its exit code, its one-line message and what it leaves on disk (verdicts:
tests/faults/campaign_harness.py). Not part of pytest (it mounts RAM disks, needs root for the full-disk cases,
and takes about 10 minutes on 2 cores); the fault suite beside it (test_faults_*.py) keeps each fixed case.

    .venv/bin/python tests/faults/campaign.py                  # this checkout, all cases
    .venv/bin/python tests/faults/campaign.py 3                # family 3 only
    .venv/bin/python tests/faults/campaign.py "full disk"      # cases whose name holds the text
    .venv/bin/python tests/faults/campaign.py --commit HEAD        # HEAD as committed (git archive)
    .venv/bin/python tests/faults/campaign.py --tree ../other --work /var/tmp/camp --reuse-assets

The tree under test is installed as pip lays it out (tests/source_layout.py --installed) into WORK/layout, and
the shared inputs are built with it into WORK/assets (tests/faults/campaign_assets.py). Writes
WORK/results.json (one record per case) and WORK/summary.md (counts per family x verdict), and prints a line per
case as it ends."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAMILY_MODULES = ("campaign_model_trust", "campaign_checkpoints", "campaign_resources", "campaign_outputs",
                  "campaign_values")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("filter", nargs="?", default="",
                        help="a family number (1-5), or text that the names of the cases to run contain "
                             "(alternatives separated by |)")
    parser.add_argument("--tree", type=Path, default=REPO, help="the source checkout to test (default: this one)")
    parser.add_argument("--commit", help="test this commit of --tree as committed (exported with git archive into "
                                         "WORK/source), not the checkout's files")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "fault-campaign",
                        help="where the layout, the assets, each case's folder and the results go "
                             "(default: build/fault-campaign)")
    parser.add_argument("--reuse-assets", action="store_true",
                        help="keep WORK/assets from an earlier campaign (of a tree that builds them the same way)")
    return parser.parse_args(argv)


def describe_tree(tree: Path) -> str:
    """The tree's commit, and whether the package's folders differ from it."""
    from tests.source_layout import package_dirs

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, check=False).stdout
    commit = git("rev-parse", "--short", "HEAD").strip() or "not a git checkout"
    changed = git("status", "--porcelain", "--", *sorted(set(package_dirs(tree).values()))).strip()
    return commit + (" with uncommitted changes to the package" if changed else "")


def exported(tree: Path, commit: str, dest: Path) -> Path:
    """`commit` of `tree` written into `dest` (emptied first), as git archive gives it."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(tree), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def prepare(tree: Path, work: Path, *, reuse: bool) -> tuple[Path, Path]:
    """(layout, assets): the tree installed as pip would, and the shared inputs built with it (or kept from an
    earlier campaign, with `reuse`)."""
    layout, assets = work / "layout", work / "assets"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(tree / "tests" / "source_layout.py"), "--installed", str(layout)], check=True,
                   stdout=subprocess.DEVNULL)
    if reuse and (assets / "state").is_dir():
        return layout, assets
    env = {**os.environ, "PYTHONPATH": f"{layout}:{REPO}", "TQDM_DISABLE": "1"}
    print("building the assets (a minute or two) ...", flush=True)
    subprocess.run([sys.executable, str(REPO / "tests" / "faults" / "campaign_assets.py"), str(assets)], check=True,
                   env=env)
    return layout, assets


def summary_table(records: list[dict], verdicts: tuple[str, ...]) -> str:
    """Counts per family x verdict, as a Markdown table with a total row and column."""
    counts = Counter((r["family"], r["verdict"]) for r in records)
    families = sorted({r["family"] for r in records})
    rows = ["| family | " + " | ".join(verdicts) + " | cases |", "|---" * (len(verdicts) + 2) + "|"]
    for family in [*families, "all"]:
        cells = [sum(n for (f, v), n in counts.items() if v == verdict and family in (f, "all"))
                 for verdict in verdicts]
        rows.append(f"| {family} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    return "\n".join(rows)


def selected(case_family: str, case_name: str, text: str) -> bool:
    return not text or (case_family.split()[0] == text if text.isdigit() else
                        any(part in case_name for part in text.split("|")))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))  # tests.* (run as a script, only tests/faults/ is on the path)
    tree, work = args.tree.resolve(), args.work.resolve()
    tested = describe_tree(tree)
    if args.commit:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", args.commit], capture_output=True,
                                text=True, check=True).stdout.strip()
        tree, tested = exported(tree, commit, work / "source"), f"{commit} (as committed)"
    layout, assets = prepare(tree, work, reuse=args.reuse_assets)
    # The cases' setups import edgeseg (checkpoint digests): the tree under test's, ahead of this repository's.
    sys.path.insert(0, str(layout))
    from tests.faults.campaign_harness import VERDICTS, Kit, run_case

    kit = Kit(python=sys.executable, layout=layout, assets=assets)
    cases = [case for module in FAMILY_MODULES for case in importlib.import_module(f"tests.faults.{module}").cases(kit)]
    records = []
    for number, case in enumerate(cases):
        if not selected(case.family, case.name, args.filter):
            continue
        record = {"id": number, **run_case(kit, case, work / "cases" / f"{number:03d}")}
        records.append(record)
        print(f"{number:03d} {record['verdict']:14s} {case.family[0]} {case.name[:58]:58s} {record['message'][:140]}",
              flush=True)
    header = {"tree": str(tree), "commit": tested, "filter": args.filter,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    (work / "results.json").write_text(json.dumps({**header, "cases": records}, indent=1))
    table = summary_table(records, VERDICTS)
    (work / "summary.md").write_text(f"{header['date']}, {header['commit']}, filter '{args.filter}'\n\n{table}\n")
    print(f"\n{header['date']}, {header['commit']}\n{table}\nresults: {work / 'results.json'}")
    return 0 if all(r["verdict"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
