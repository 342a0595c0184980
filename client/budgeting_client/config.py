"""Where `budgetctl` (and `BudgetClient.from_env`) find the service and the credentials.

Sources, highest first:
1. command-line options (`--url`, `--token`, `--api-key`, `--timeout`);
2. a profile chosen explicitly (`--profile NAME` or `BUDGET_PROFILE`) from the profile file;
3. the environment: `BUDGET_URL`, `BUDGET_TOKEN` or `BUDGET_API_KEY`, `BUDGET_TIMEOUT`;
4. the `[default]` profile of the profile file.

An explicit profile beats the environment so that `--profile prod` never sends a production
token to a development URL left in `BUDGET_URL`. The credential is taken as a whole from the
first source that has one (never a token from one place and a key from another).

The profile file is `BUDGETCTL_CONFIG`, else `$XDG_CONFIG_HOME/budgetctl/config.toml`, else
`~/.config/budgetctl/config.toml`:

    [default]
    url = "http://localhost:8000"
    token = "eyJ..."

    [prod]
    url = "https://budget.example.com"
    api_key = "bk_..."
    timeout = 30
"""

from __future__ import annotations

import os
import stat
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    profile: str | None = None
    source: str = ""  # where the URL came from, for messages


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("BUDGETCTL_CONFIG"):
        return Path(env["BUDGETCTL_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "budgetctl" / "config.toml"


def read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"{path} is readable by other users; it may hold credentials (chmod 600 it)",
                stacklevel=2,
            )
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return {name: dict(table) for name, table in data.items() if isinstance(table, dict)}


def _clean(source: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if v not in (None, "")}


def resolve(
    *,
    url: str | None = None,
    token: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    profile: str | None = None,
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    path = Path(config).expanduser() if config else config_path(env)
    profiles = read_profiles(path)
    chosen = profile or env.get("BUDGET_PROFILE") or None
    if chosen is not None and chosen not in profiles:
        raise ConfigError(f"no profile [{chosen}] in {path}")

    flags = _clean({"url": url, "token": token, "api_key": api_key, "timeout": timeout})
    environment = _clean(
        {
            "url": env.get("BUDGET_URL"),
            "token": env.get("BUDGET_TOKEN"),
            "api_key": env.get("BUDGET_API_KEY"),
            "timeout": env.get("BUDGET_TIMEOUT"),
        }
    )
    sources: list[tuple[str, dict[str, Any]]] = [("command line", flags)]
    if chosen is not None:
        sources += [(f"profile [{chosen}]", _clean(profiles[chosen])), ("environment", environment)]
    else:
        sources += [
            ("environment", environment),
            (f"profile [{DEFAULT_PROFILE}]", _clean(profiles.get(DEFAULT_PROFILE, {}))),
        ]

    found_url = next(((name, s["url"]) for name, s in sources if "url" in s), None)
    if found_url is None:
        raise ConfigError(
            f"no service URL: pass --url, set BUDGET_URL, or add url to a profile in {path}"
        )
    credential = next((s for _, s in sources if "token" in s or "api_key" in s), {})
    found_timeout = next((s["timeout"] for _, s in sources if "timeout" in s), None)
    try:
        timeout_value = float(found_timeout) if found_timeout is not None else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"timeout is not a number: {found_timeout!r}") from exc
    token_value = credential.get("token")
    return Settings(
        url=str(found_url[1]),
        token=str(token_value) if token_value else None,
        api_key=None if token_value else (str(credential.get("api_key") or "") or None),
        timeout=timeout_value,
        profile=chosen or (DEFAULT_PROFILE if DEFAULT_PROFILE in profiles else None),
        source=found_url[0],
    )
