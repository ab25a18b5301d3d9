"""axe-core for the console's accessibility tests: the npm tarball of a pinned version, checked
against its pinned SHA-256, unpacked once into ``~/.cache/roomscope-tests/`` (no node needed: the
tarball holds ``axe.min.js``, injected into the page by the tests).

Run as a script (``tests/install-browser.sh`` does) to fetch it ahead of the tests::

    python tests/axe.py
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "4.10.2"
URL = f"https://registry.npmjs.org/axe-core/-/axe-core-{VERSION}.tgz"
SHA256 = "9ea2d2d6917da998122bdacfd3b473e31ead53f4b87146c716a12edf89158100"
CACHE = Path(os.environ.get("ROOMSCOPE_TEST_CACHE", Path.home() / ".cache" / "roomscope-tests"))


def axe_script(timeout: float = 30) -> Path:
    """The path of axe.min.js, downloaded and checked on first use; OSError or ValueError when
    it cannot be had (no network, a tarball that is not the pinned one)."""
    target = CACHE / f"axe-core-{VERSION}" / "axe.min.js"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"axe-core-{VERSION}.lock", "w") as lock:  # one download at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        with urllib.request.urlopen(URL, timeout=timeout) as r:
            data = r.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != SHA256:
            raise ValueError(f"{URL}: sha256 {digest}, expected {SHA256}")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            script = member.read()
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(script)
        tmp.replace(target)
    return target


def main() -> None:
    try:
        print(axe_script())
    except (OSError, ValueError) as e:
        sys.exit(f"axe-core {VERSION}: {e}")


if __name__ == "__main__":
    main()
