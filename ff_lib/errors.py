"""Domain errors: each message is shown to the user as is and says what to do."""


class FFError(Exception):
    """Base of every error a user can cause; pages and the CLI show its message as is."""


# --- workspace (ff_lib/data) ---
class WorkspaceBusy(FFError):
    """Another process holds the workspace database locked past the retry window."""


class WorkspaceError(FFError):
    """The workspace folder or database cannot be used."""


class NotFound(FFError):
    """A run, dataset or conversation id that does not exist."""


class InvalidInput(FFError):
    """A value the user gave that cannot be accepted (bad status, empty name, ...)."""


class DatasetImportError(FFError):
    """A dataset file that cannot be imported; nothing was written."""


# --- models (ff_lib/inference) ---
class AdapterInvalid(FFError):
    """An adapter folder that fails validation."""


class BaseModelUnavailable(FFError):
    """A base model that is not a local folder and not in the local cache."""


class QuantizationError(FFError):
    """The requested quantization cannot be used here (no silent fallback)."""


class EmptyPrompt(FFError):
    """A prompt with nothing in it."""


class GenerationError(FFError):
    """Generation failed or timed out."""


class FineFoundryImportError(FFError):
    """A FineFoundry database that cannot be imported; nothing was written."""


class EngineUnreachable(GenerationError):
    """The remote engine (a vLLM server) named by the engine URL does not answer."""
