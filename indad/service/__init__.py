"""The HTTP scoring service (``indad serve``): a FastAPI app that scores uploaded images with one loaded model.

Needs the ``serve`` extra (``pip install 'indad[serve]'``: FastAPI, uvicorn, prometheus-client).
"""

from .app import ServiceOptions, create_app
from .batcher import MicroBatcher

__all__ = ["MicroBatcher", "ServiceOptions", "create_app"]
