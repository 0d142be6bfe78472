"""PyTorch: an edgeseg checkpoint run as itself, the FP32 reference every conversion is verified against.

No target converts to it; a hand-written manifest (or the bench's reference rows) names the backend.
"""

from __future__ import annotations

from edgeseg.formats import ArtifactFormat
from edgeseg.packages import MODEL_STACK

FORMAT = ArtifactFormat(
    "pytorch", backend="pytorch", suffix=".pt", runner="edgeseg.formats.pytorch.reference",
    run_packages=MODEL_STACK,
)
