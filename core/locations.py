"""Where things live: the vault (flag, env, nearest ancestor, user data dir) and user dirs."""

from __future__ import annotations

import os
from pathlib import Path

from watchkeeper.core.config import CONFIG_NAME

APP = "watchkeeper"
VAULT_ENV = "WATCHKEEPER_VAULT"


def default_vault() -> Path:
    from platformdirs import user_data_path  # only when no vault was named or found

    return user_data_path(APP) / "vault"


def user_themes_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP) / "themes"


def nearest_vault(start: Path) -> Path | None:
    """`start` or the nearest folder above it that holds watchkeeper.toml."""
    here = start.absolute()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None


def find_vault(flag: Path | None, cwd: Path | None = None) -> tuple[Path, str]:
    """The vault to use and why: "flag", "env", "ancestor" or "default"."""
    if flag is not None:
        return flag.expanduser().absolute(), "flag"
    env = os.environ.get(VAULT_ENV)
    if env:
        return Path(env).expanduser().absolute(), "env"
    found = nearest_vault(cwd or Path.cwd())
    if found is not None:
        return found, "ancestor"
    return default_vault(), "default"
