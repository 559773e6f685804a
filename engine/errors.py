"""One exception hierarchy for everything the engine refuses.

Every message is a sentence a person can act on: what is wrong and what to do about it. The app
catches ``CNNExplorerError`` once (in ``ui.errors``) and shows the message; it never shows a
traceback.
"""


class CNNExplorerError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidImageError(CNNExplorerError):
    """A file or array that cannot be used as an image (empty, truncated, not an image, too big)."""


class InvalidModelError(CNNExplorerError):
    """A model that cannot be loaded or explored (broken file, unsafe layer, no image input...)."""


class WeightsUnavailableError(CNNExplorerError):
    """Pretrained weights that are neither cached nor downloadable right now."""


class InvalidDatasetError(CNNExplorerError):
    """A data set (zip, folder) whose layout or content cannot be used."""


class TrainingError(CNNExplorerError):
    """A training run that cannot start or go on (bad settings, too many runs at once, a model
    that does not fit the data set)."""


class BusyError(CNNExplorerError):
    """Too many computations waiting or running for one person on a shared server."""
