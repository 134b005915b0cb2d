"""An env_file that a symlink made after validation leads out of the vault is not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.core.config import load_config
from watchkeeper.core.environment import EnvFileError, job_environment


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


async def test_a_cwd_swapped_for_a_symlink_out_of_the_vault_fails_the_run_unstarted(
    make_vault, tmp_path: Path
) -> None:
    from conftest import finals, finish, started_keeper, until

    vault = make_vault('[jobs.j]\ncommand = ["pwd"]\ncwd = "work"\n')
    (vault / "work").mkdir()
    keeper = await started_keeper(vault)
    try:
        (vault / "work").rmdir()
        (vault / "work").symlink_to(tmp_path)
        keeper.run_now("j")
        await until(lambda: finals(vault, "j"))
    finally:
        await finish(keeper)
    [record] = finals(vault, "j")
    assert record["status"] == "failure"
    assert "cwd leads out of the vault" in record["error"]
