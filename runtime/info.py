"""`edgeseg info`: an artifact's manifest, the metadata it carries itself, and whether the two agree."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    _register_info(sub)


def _register_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print an artifact's manifest and its embedded metadata readably",
                       description="Print an artifact's manifest, the metadata the artifact carries itself (TFLite "
                                   "Model Metadata, ONNX metadata_props) and whether the two agree. A .tflite "
                                   "without a manifest is described from its metadata alone.")
    p.add_argument("artifact", help="artifact, its manifest, or a folder holding one manifest")
    p.add_argument("--json", action="store_true", help="print the raw manifest and the embedded metadata as JSON")
    p.set_defaults(run=_info)


def _tensor_lines(io, io_found: list) -> list[str]:
    """The tensors the artifact declares, and where they contradict the manifest (None: not readable here)."""
    if io is None:
        return []
    inputs, outputs = io
    shown = ", ".join(t.describe() for t in inputs) + " -> " + ", ".join(t.describe() for t in outputs)
    if not io_found:
        return [f"tensors      {shown} (as the manifest says)"]
    return [f"tensors      {shown}",
            "               DISAGREE with the manifest on: " + "; ".join(f"{d.field} ({d.detail})" for d in io_found)]


def _metadata_lines(m, embedded: dict | None, io_fields: list[str]) -> list[str]:
    """The artifact's own metadata and whether it, and the tensors it declares (`io_fields`: the manifest fields
    they contradict), agree with the manifest."""
    from edgeseg.runtime.model_metadata import disagreements

    if embedded is None:
        return [f"metadata     none inside {m.artifact_path.name}"]
    if "unread" in embedded:
        return [f"metadata     {embedded['format']} not read: {embedded['unread']}"]
    if embedded["format"] == "TFLite Model Metadata":
        norm = embedded["normalization"]
        normalization = (f"NormalizationOptions mean {norm['mean']} std {norm['std']} (0..255)" if norm
                         else "no NormalizationOptions")
        lines = [f"metadata     {embedded['format']}: {embedded['name']} (version {embedded['version']}, "
                 f"author {embedded['author']}, license {embedded['license']}, "
                 f"parser >= {embedded['min_parser_version']})",
                 f"               input {embedded['color_space']} {embedded['size']}, {normalization}",
                 f"               output {embedded['output']} (activation {embedded['activation']})",
                 f"               labels {embedded['labels']}"]
    else:
        lines = [f"metadata     {embedded['format']}: " + ", ".join(f"{k}={v}" for k, v in embedded.items()
                                                                  if k not in ("format", "labels")),
                 f"               labels {embedded.get('labels')}"]
    if m.data.get("from_metadata"):
        lines.append("               (no manifest: edgeseg runs this model from its metadata)")
    else:
        found = disagreements(m, embedded) + io_fields
        lines.append("               agrees with the manifest" if not found
                     else f"               DISAGREES with the manifest on: {', '.join(found)}")
    return lines


def _engine_lines(d: dict) -> list[str]:
    """The oldest engine release the artifact is verified with, and whether the installed one is older."""
    import importlib.metadata

    from edgeseg.targets import engine_floor_problem

    floor = d.get("runtime", {}).get("min_engine")
    if not floor:
        return []
    try:
        installed = importlib.metadata.version(floor["package"])
    except importlib.metadata.PackageNotFoundError:
        installed = None
    fmt = d.get("target_profile", {}).get("format")
    problem = engine_floor_problem(fmt, installed) if fmt else None
    here = "not installed here" if installed is None else f"installed {installed}"
    return [f"engine       {floor['package']} >= {floor['version']} (the oldest verified to give the same masks); "
            + (f"OLDER HERE: {problem}" if problem else here)]


def _info(args: argparse.Namespace) -> int:
    from edgeseg.runtime.backend import load_model_manifest
    from edgeseg.runtime.model_io import io_disagreements
    from edgeseg.runtime.model_metadata import declared_io, embedded_summary

    m = load_model_manifest(args.artifact)
    d = m.data
    embedded = embedded_summary(m.artifact_path)
    io = declared_io(m.artifact_path)
    io_found = io_disagreements(m, *io) if io is not None else []
    if args.json:
        print(json.dumps({**d, "embedded_metadata": embedded}, indent=2))
        return 0
    model, inp, out = d["model"], d["input"], d["output"]
    norm = inp.get("normalization")
    lines = [
        (f"artifact     {m.artifact_path}  ({d.get('size_mb', '?')} MB, "
         f"sha256 {str(d.get('artifact_sha256', '?'))[:12]})"),
        f"target       {d['target']}  backend {d['backend']}  precision {d['precision']}",
        f"model        {model['architecture']}, {model['num_classes']} classes: {', '.join(model['labels'])}",
        *([f"image pool   over {model['image_pool_window']} px windows where the input is larger"]
          if model.get("image_pool_window") else []),
        f"weights      {model.get('weights_source')}  (sha256 {str(model.get('weights_sha256'))[:12]})",
        (f"input        {inp['height']}x{inp['width']} {inp.get('layout')} {inp.get('dtype')} "
         f"{inp.get('color_order', 'RGB')}, normalization {'in model' if norm == 'in_model' else norm}"),
        f"output       {out['kind']} {out.get('layout')} {out.get('dtype')}",
    ]
    lines += _tensor_lines(io, io_found)
    lines += _metadata_lines(m, embedded, [f.field for f in io_found])
    lines += _engine_lines(d)
    parts = d.get("conversion", {}).get("xnnpack_partitions")
    if parts is not None:  # LiteRT artifacts: 1 = the whole graph runs inside the XNNPACK delegate
        lines.append(f"xnnpack      {parts} partition{'s' if parts != 1 else ''}"
                     + (" (the whole graph delegated)" if parts == 1 else " (ops between them run outside XNNPACK)"))
    v = d.get("verification")
    if v:
        lines.append(f"verification argmax agreement {v['argmax_agreement']:.5f}, "
                     f"max |logit diff| {v.get('max_abs_logit_diff')}, mIoU change {v.get('miou_delta')}, "
                     f"passed {v.get('passed')}")
        for s in v.get("sets", []):
            extra = f", mIoU {s['miou']:.2f} (reference {s['reference_miou']:.2f})" if "miou" in s else ""
            lines.append(f"               {s['set']}: {s['images']} images, "
                         f"agreement {s['argmax_agreement']:.5f}{extra}")
    if d.get("tools"):
        lines.append(f"tools        {', '.join(f'{k} {v}' for k, v in d['tools'].items())}")
    if d.get("created"):
        lines.append(f"created      {d.get('created')}")
    print("\n".join(lines))
    return 0
