"""The ``tessera`` command-line tool.

Commands: ``tessera dev up`` (run the whole stack locally), ``tessera status`` (health of every
component), ``tessera plugins list`` (installed plugins and load failures), ``tessera version``.
"""

from tessera.client.cli._app import app, main

__all__ = ["app", "main"]
