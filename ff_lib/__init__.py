"""FF Playground: a local playground for LoRA fine-tunes (everything that is not layout)."""

__version__ = "0.1.0"
