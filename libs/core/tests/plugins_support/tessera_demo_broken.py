"""A plugin whose module cannot be imported: it needs a dependency that is not installed."""

import tessera_demo_dependency_that_is_not_installed  # noqa: F401  (the import is the failure)
