"""`serve`: the workspace's runs over an OpenAI-compatible HTTP API (FastAPI on uvicorn).

Routes (app.py), request parsing (parsing.py), OpenAI's shapes (shapes.py), the models listed
(catalog.py), replies and their threads (generation.py), recording (recording.py), keys
(auth.py), errors (errors.py).
"""

from ff_lib.serve.app import create_app
from ff_lib.serve.auth import check_bind, is_loopback

__all__ = ["check_bind", "create_app", "is_loopback"]
