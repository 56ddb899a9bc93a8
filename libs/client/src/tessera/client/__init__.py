"""Tessera Python SDK and the ``tessera`` command-line tool.

One subpackage per service, each async first with a thin sync facade:
:mod:`tessera.client.registry`, :mod:`tessera.client.lock`, :mod:`tessera.client.ratelimit` and
:mod:`tessera.client.governance`; the CLI lives in :mod:`tessera.client.cli` and the local
development stack in :mod:`tessera.client.devstack`.
"""

from importlib.metadata import version as _distribution_version

__version__ = _distribution_version("tessera-client")

__all__ = ["__version__"]
