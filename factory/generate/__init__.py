"""Generation backends behind one small protocol, and the run loop that writes shards."""

from factory.generate.base import Backend, Completion, Request, open_backend

__all__ = ["Backend", "Completion", "Request", "open_backend"]
