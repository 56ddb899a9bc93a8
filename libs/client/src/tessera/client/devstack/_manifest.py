import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tessera.client.devstack._components import Component
from tessera.core import FailedPreconditionError

MANIFEST_NAME = "stack.json"


class StackManifestError(FailedPreconditionError):
    """``stack.json`` exists but is not a stack manifest (hand-edited, or from another version)."""


class StackManifest(BaseModel):
    """The record of a running stack, ``<data-dir>/stack.json``, that ``tessera status`` reads.

    Attributes:
        supervisor_pid: Pid of the ``tessera dev up`` process that owns the stack.
        etcd_endpoints: etcd client endpoints (``host:port``).
        redis_url: Redis URL (also the Celery broker).
        components: Every component, in start order.

    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    supervisor_pid: int
    etcd_endpoints: tuple[str, ...]
    redis_url: str
    components: tuple[Component, ...]

    def write(self, data_dir: Path) -> Path:
        """Write the manifest atomically to ``data_dir/stack.json``.

        Readers never see a half-written file: the text goes to a temporary file that replaces the
        manifest in one rename.

        Returns:
            The path written.

        """
        path = data_dir / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> "StackManifest | None":
        """Read ``data_dir/stack.json``.

        Returns:
            The manifest, or None when the file does not exist.

        Raises:
            StackManifestError: The file exists but is not a valid manifest.

        """
        path = data_dir / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise StackManifestError(f"{path} is not a valid stack manifest: {exc}") from exc

    @staticmethod
    def remove(data_dir: Path) -> None:
        """Delete ``data_dir/stack.json`` if present (the stack has stopped)."""
        (data_dir / MANIFEST_NAME).unlink(missing_ok=True)
