"""`edgeseg targets`: the target profiles, as a table or JSON."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    _register_targets(sub)


def _register_targets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list the target profiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_targets)


def _targets(args: argparse.Namespace) -> int:
    from edgeseg.targets import all_targets

    targets = all_targets()
    if args.json:
        print(json.dumps({n: t.to_dict() for n, t in targets.items()}, indent=2))
        return 0
    for t in targets.values():
        extra = f", delegate {t.litert.delegate}" if t.litert else ""
        extra += f", DLA cores {t.tensorrt.dla_cores}" if t.tensorrt else ""
        extra += f", device {t.openvino.device}" if t.openvino else ""
        print(f"{t.name:18} {t.backend:12} {'/'.join(t.precisions):28} default {t.default_resolution}{extra}")
        print(f"{'':18} {t.description}")
    return 0
