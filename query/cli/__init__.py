"""The command line: click commands over the query library (``roomscope``)."""

from .commands import main

__all__ = ["main"]
