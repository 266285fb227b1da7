"""FF Playground: a local playground for LoRA fine-tunes (everything that is not layout)."""

from ff_lib.offline import default_to_offline

__version__ = "0.1.0"

# First thing any entry point (Home.py, the pages, `python -m ff_lib`, the server) imports, so
# offline mode is set before transformers or huggingface_hub read it.
default_to_offline()
