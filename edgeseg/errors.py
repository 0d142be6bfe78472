"""One exception type per problem a user can act on; the CLI prints each as one line."""


class EdgesegError(Exception):
    """Base class: the message is complete and names the file or value at fault."""


class WeightsError(EdgesegError):
    """Weights missing, corrupt, or for another architecture or class count."""


class DatasetError(EdgesegError):
    """A dataset folder that is empty, unreadable or mislabelled."""


class ConfigError(EdgesegError):
    """An option value, target or precision that cannot be used."""


class ManifestError(EdgesegError):
    """An artifact without a readable or consistent manifest."""


class VerificationError(EdgesegError):
    """A converted model that disagrees with its PyTorch reference beyond the budget."""


class BackendUnavailableError(EdgesegError):
    """A backend whose runtime library or hardware is not present on this machine."""


class SourceError(EdgesegError):
    """A camera, stream or file source that cannot be opened or stopped delivering frames."""


class MissingPackageError(EdgesegError):
    """An optional package this command needs is not installed; the message names the extra to install."""


class ModelOutputError(EdgesegError):
    """A model output that cannot be a segmentation: NaN/Inf, or class ids outside the model's labels."""


class NoResultError(EdgesegError):
    """A run that produced nothing useful: every row failed or was not run, every input was refused."""


class OutputError(EdgesegError):
    """An output that could not be written completely (a full disk, an unwritable place)."""


class PackageConflictError(EdgesegError):
    """Installed packages that cannot work together (a pip numpy shadowing the one the system's OpenCV needs)."""


class TrainingError(EdgesegError):
    """Training that cannot go on: a loss or weights that became NaN/Inf (a diverging learning rate)."""


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an exception's message (or of a text), stripped; "" when it has none.

    The one way edgeseg quotes a library's error in its own one-line messages (an empty message is not
    an IndexError)."""
    text = error if isinstance(error, str) else str(error)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
