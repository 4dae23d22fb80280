"""Where a run happens: user, host, kernel id and notebook path, found without side effects."""

from __future__ import annotations

import getpass
import os
import re
import socket
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def host() -> str:
    """This machine's name, or ``CARBON_JUPYTER_HOST`` when set (a container's, a test's)."""
    return os.environ.get("CARBON_JUPYTER_HOST", "").strip() or _hostname()


@lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


def kernel_id() -> str | None:
    """The Jupyter kernel id when running inside an ipykernel, else None."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.connect import get_connection_file  # type: ignore[import-untyped]

        name = os.path.basename(get_connection_file())
    except Exception:
        return None
    match = re.search(r"kernel-(.+)\.json$", name)
    return match.group(1) if match else None


def notebook_path() -> str | None:
    """The notebook's path where the frontend tells the kernel (Jupyter Server 2, VS Code)."""
    path = os.environ.get("JPY_SESSION_NAME")
    if path:
        return path
    main = sys.modules.get("__main__")
    vscode = getattr(main, "__vsc_ipynb_file__", None)
    if isinstance(vscode, str):
        return vscode
    return None
