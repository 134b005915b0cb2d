"""A run's environment: keeper env + env_file + job env, and the secrets to mask in it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from watchkeeper.core.config import JobConfig

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)
MASK = "***"
# Shorter values would mangle ordinary output ("1", "yes") without protecting anything.
MIN_SECRET_LENGTH = 4


class EnvFileError(ValueError):
    pass


def expand(value: str, source: Mapping[str, str]) -> str:
    """${NAME} from the keeper's environment; an unset name expands to "" as in a shell."""
    return _REFERENCE.sub(lambda match: source.get(match.group(1), ""), value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, `#` comments, `export ` prefixes and quotes allowed.
    An error names the file and line but never quotes it: the line may be a secret, and
    the error goes to history, the keeper log, the Dashboard and every JSON output."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EnvFileError(f"{path}: cannot read env_file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise EnvFileError(f"{path}: env_file is not UTF-8 (byte {error.start})") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise EnvFileError(
                f"{path}:{number}: expected KEY=VALUE (a name, `=`, the value); "
                "the line is not shown as it may hold a secret"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def inside_vault(vault: Path, relative: str, key: str) -> Path:
    """The path a vault-relative key names, refused when a symlink made after the config
    was validated leads it out of the vault."""
    path = vault / relative
    real, root = path.resolve(), vault.resolve()
    if real != root and not real.is_relative_to(root):
        raise EnvFileError(f"{path}: {key} leads out of the vault (to {real}); not used")
    return path


def job_environment(job: JobConfig, vault: Path, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    if job.env_file:
        env.update(read_env_file(inside_vault(vault, job.env_file, "env_file")))
    for key, value in job.env.items():
        env[key] = expand(value, base)
    return env


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str], declared: Iterable[str]) -> list[str]:
    names = set(declared) | {name for name in env if is_secret_name(name)}
    values = {env[name] for name in names if len(env.get(name, "")) >= MIN_SECRET_LENGTH}
    # Longest first, so a secret containing another is masked whole.
    return sorted(values, key=len, reverse=True)


def _pieces(secrets: Iterable[str]) -> list[str]:
    """Each secret, and each line of a multi-line one (a PEM key printed line by line)
    long enough to mask without mangling ordinary output; longest first, so a secret
    containing another is masked whole."""
    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        lines = [line.strip() for line in secret.splitlines()]
        if len(lines) > 1:
            pieces.update(line for line in lines if len(line) >= MIN_SECRET_LENGTH)
    return sorted(pieces, key=lambda piece: (-len(piece), piece))


class Masker:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = _pieces(secrets)
        self._pattern = (
            re.compile("|".join(re.escape(secret) for secret in self.secrets))
            if self.secrets
            else None
        )
        self._encoded: re.Pattern[bytes] | None = None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def safe_cut(self, data: bytes) -> int:
        """How much of `data`, output with more to come, can be masked and written now:
        not a secret that is whole in it cut in two, nor the start of one that the
        output to come may complete. 0: wait for more."""
        cut = len(data)
        if self.secrets:
            if self._encoded is None:
                self._encoded = re.compile(
                    b"|".join(re.escape(secret.encode()) for secret in self.secrets)
                )
            # A secret may begin anywhere in the last (longest - 1) bytes.
            cut -= len(self.secrets[0].encode()) - 1
            for match in self._encoded.finditer(data):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    cut = match.start()
                    break
        return max(cut, 0)
