"""The tensors an artifact declares it takes and gives, checked against what its manifest says.

A manifest whose sha256 matches its artifact can still describe it wrongly (hand-edited, or copied from
another conversion): an NHWC input called NCHW, a uint8 input called float32, logits called a mask, 21
score planes called 7 classes. Every backend reads its engine's own view of the model's I/O when it loads
it and calls `check_declared`, so such a manifest is refused in one line naming the manifest and the field
(and, through `model_metadata.disagreements`, the artifact's embedded metadata too); `edgeseg info` lists
the same disagreements instead of saying the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseg.errors import ManifestError
from edgeseg.input_spec import InputSpec
from edgeseg.manifest import Manifest

CHANNELS = 3  # edgeseg feeds RGB (or BGR) images
OTHER_LAYOUT = {"NCHW": "NHWC", "NHWC": "NCHW"}


@dataclass(frozen=True)
class TensorDecl:
    """One input or output as the artifact declares it: its shape (None for a dimension it leaves open)
    and its element type as numpy names it."""

    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        return f"[{', '.join('?' if d is None else str(d) for d in self.shape)}] {self.dtype}"


@dataclass(frozen=True)
class Disagreement:
    field: str  # the manifest's field, as `info` and the refusal name it
    detail: str


def _fits(shape: tuple[int | None, ...], expected: tuple[int, ...]) -> bool:
    return len(shape) == len(expected) and all(d is None or d == e for d, e in zip(shape, expected))


def _batch(spec: InputSpec, layout: str) -> tuple[int, ...]:
    return (1, spec.height, spec.width, CHANNELS) if layout == "NHWC" else (1, CHANNELS, spec.height, spec.width)


def input_disagreements(spec: InputSpec, declared: TensorDecl, name: str) -> list[Disagreement]:
    """Where the input `name` declares contradicts the manifest's input spec."""
    found = []
    shape = declared.shape
    if not _fits(shape, _batch(spec, spec.layout)):
        channel_axis = 3 if spec.layout == "NHWC" else 1
        if len(shape) != 4:
            found.append(Disagreement("input.layout", f"{name} takes a {len(shape)}-D input {declared.describe()}, "
                                                      f"not a {spec.layout} image batch"))
        elif _fits(shape, _batch(spec, OTHER_LAYOUT.get(spec.layout, "NCHW"))):
            found.append(Disagreement("input.layout", f"the manifest says {spec.layout}; {name} takes "
                                                      f"{declared.describe()} ({OTHER_LAYOUT[spec.layout]})"))
        elif shape[channel_axis] not in (None, CHANNELS):
            found.append(Disagreement("input channels", f"{name} takes {shape[channel_axis]} channels "
                                                        f"({declared.describe()}); edgeseg feeds {CHANNELS}"))
        else:
            found.append(Disagreement("input.height/width", f"the manifest says {spec.height}x{spec.width}; "
                                                            f"{name} takes {declared.describe()}"))
    if declared.dtype != spec.dtype:
        found.append(Disagreement("input.dtype", f"the manifest says {spec.dtype}; {name} takes {declared.dtype}"))
    return found


def output_disagreements(manifest: Manifest, declared: TensorDecl, name: str) -> list[Disagreement]:
    """Where the output `name` declares contradicts the manifest's output section and class count."""
    spec = manifest.output_spec()
    shape, classes = declared.shape, manifest.num_classes
    found = []
    if spec.kind == "logits":
        planes = {"NCHW": 1, "NHWC": 3}
        axis = planes[spec.layout]
        if len(shape) == 3 or (len(shape) == 4 and shape[axis] == 1 and classes > 1):
            found.append(Disagreement("output.kind", f"the manifest says logits; {name} outputs "
                                                     f"{declared.describe()} (a class mask)"))
        elif len(shape) != 4:
            found.append(Disagreement("output.layout", f"{name} outputs {declared.describe()}, not {spec.layout} "
                                                       "scores"))
        elif shape[axis] not in (None, classes):
            other = planes[OTHER_LAYOUT[spec.layout]]
            if shape[other] == classes:
                found.append(Disagreement("output.layout", f"the manifest says {spec.layout}; {name} outputs "
                                                           f"{declared.describe()} ({OTHER_LAYOUT[spec.layout]})"))
            else:
                found.append(Disagreement("model.num_classes", f"the manifest says {classes} classes; {name} "
                                                               f"outputs {shape[axis]} score planes"))
    elif spec.kind == "mask":
        squeezable = len(shape) == 4 and 1 in (shape[1], shape[3])
        if not (len(shape) == 3 or squeezable):
            found.append(Disagreement("output.kind", f"the manifest says mask ({spec.layout}); {name} outputs "
                                                     f"{declared.describe()}"))
    recorded = manifest.output.get("dtype")
    if isinstance(recorded, str) and recorded != declared.dtype:
        found.append(Disagreement("output.dtype", f"the manifest says {recorded}; {name} outputs {declared.dtype}"))
    return found


def io_disagreements(manifest: Manifest, inputs: list[TensorDecl], outputs: list[TensorDecl]) -> list[Disagreement]:
    """Every manifest field the declared tensors contradict (empty: they agree)."""
    name = manifest.artifact_path.name
    if len(inputs) != 1 or len(outputs) < 1:
        return [Disagreement("input", f"{name} has {len(inputs)} inputs and {len(outputs)} outputs; edgeseg runs "
                                      "one input")]
    found = input_disagreements(manifest.input_spec(), inputs[0], name)
    return found + output_disagreements(manifest, outputs[0], name)


def check_declared(manifest: Manifest, inputs: list[TensorDecl], outputs: list[TensorDecl],
                   embedded: dict[str, Any] | None = None) -> None:
    """Refuse (one ManifestError line naming the manifest and the field) a manifest that contradicts the
    tensors its artifact declares or, when given, the metadata the artifact carries (`embedded`, as
    `model_metadata` reads it)."""
    found = io_disagreements(manifest, inputs, outputs)
    if found:
        first = found[0]
        raise ManifestError(f"{manifest.path}: manifest field {first.field} contradicts the artifact: {first.detail}")
    if embedded is not None and not manifest.data.get("from_metadata"):
        from edgeseg.runtime.model_metadata import disagreements

        fields = disagreements(manifest, embedded)
        if fields:
            raise ManifestError(f"{manifest.path}: manifest disagrees with the {embedded['format']} inside "
                                f"{manifest.artifact_path.name} on: {', '.join(fields)}")
