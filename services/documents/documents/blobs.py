"""Content-addressed blob store on a directory: one file per distinct content, named by sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from chassis.settings import env, var_dir


def default_blob_dir() -> Path:
    configured = env("COORDO_DOCUMENTS_BLOB_DIR")
    return Path(configured) if configured else var_dir() / "blobs" / "documents"


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        # Two-level fan-out keeps directories small once there are many documents.
        return self.root / sha256[:2] / sha256

    def put(self, content: bytes) -> str:
        """Store the content (once) and return its sha256; durable when this returns."""
        digest = hashlib.sha256(content).hexdigest()
        target = self._path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write aside then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        return self._path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
