"""Processes and services the server-kit tests run."""
