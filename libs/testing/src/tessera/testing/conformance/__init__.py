"""Conformance kits: one module per plugin family, testing exactly its Protocol's contract.

A plugin author imports the kit for their family and runs it against their plugin from their own
test suite; the built-in plugins run the same kits. Each kit documents how to point it at a plugin.
"""
