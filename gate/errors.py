"""One exception tree for the whole project.

Each leaf also inherits the builtin it specialises, so callers that only know
``ValueError`` or ``OSError`` still catch it (the gpiozero habit).
"""


class MaskgateError(Exception):
    """Root of every error maskgate raises on purpose."""


class ConfigError(MaskgateError, ValueError):
    """settings.toml (or an environment override) is invalid. The message names the key."""


class ImageError(MaskgateError, ValueError):
    """A file could not be read as an image (missing, empty, truncated, not an image)."""


class ModelError(MaskgateError, ValueError):
    """A model file is not a usable TFLite model."""


class ContractError(ModelError):
    """A model's contract (its sidecar JSON) is missing, corrupt or disagrees with its tensors."""


class AssetError(MaskgateError, FileNotFoundError):
    """A third-party asset (e.g. a MediaPipe model) is missing or fails its SHA-256 check."""


class CameraError(MaskgateError, OSError):
    """The camera source cannot be opened or stopped delivering frames."""


class BrokerError(MaskgateError, ConnectionError):
    """The MQTT broker refused us (bad credentials, bad certificate) or cannot be reached."""


class DatasetError(MaskgateError, ValueError):
    """A dataset folder is unusable (missing class, too few images)."""


class StateError(MaskgateError, OSError):
    """A file in the state directory (the outbox) is corrupt or not ours: refuse to start rather than lose it."""


class UsageError(MaskgateError, ValueError):
    """A command-line argument that cannot work (gate-cli exits 2, like argparse's own errors)."""


class StorageFullError(MaskgateError, OSError):
    """The state folder takes no more writes (disk full, I/O error): the door is held locked, no
    grant goes unrecorded, and the gate retries by itself (not a StateError: freeing space fixes it)."""


class DeviceBusyError(MaskgateError, OSError):
    """A device is held by another process (a GPIO line claimed elsewhere): it may come back, so it is retried."""
