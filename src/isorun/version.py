"""isorun's version: one definition, read by the package, the cache key and pyproject.toml.

A module of its own, below every layer: ``from isorun import __version__`` in a low
module would go through the package's ``__init__``, whose lazy names lead up to the API.
"""

__version__ = "0.1.0"
