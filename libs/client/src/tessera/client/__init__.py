"""Tessera Python SDK and the ``tessera`` command-line tool.

The SDK proper arrives with the services; for now the package holds the CLI
(:mod:`tessera.client.cli`) and the local development stack (:mod:`tessera.client.devstack`).
"""

from importlib.metadata import version as _distribution_version

__version__ = _distribution_version("tessera-client")

__all__ = ["__version__"]
