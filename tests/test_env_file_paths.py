"""An env_file that a symlink made after validation leads out of the vault is not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from core.environment import EnvFileError, job_environment


def _vault(tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "watchkeeper.toml").write_text(
        '[jobs.j]\ncommand = ["true"]\nenv_file = "conf/job.env"\n', encoding="utf-8"
    )
    (vault / "conf").mkdir()
    (vault / "conf" / "job.env").write_text("A=inside\n", encoding="utf-8")
    return vault


def test_an_env_file_inside_the_vault_is_read(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    job = load_config(vault / "watchkeeper.toml").jobs["j"]
    assert job_environment(job, vault, {})["A"] == "inside"


def test_an_env_file_swapped_for_a_symlink_out_of_the_vault_is_refused(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    job = load_config(vault / "watchkeeper.toml").jobs["j"]
    outside = tmp_path / "secret.env"
    outside.write_text("A=outside\n", encoding="utf-8")
    (vault / "conf" / "job.env").unlink()
    (vault / "conf" / "job.env").symlink_to(outside)
    with pytest.raises(EnvFileError, match="leads out of the vault"):
        job_environment(job, vault, {})
