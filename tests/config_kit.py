"""What the config tests share: a watchkeeper.toml written in tmp_path, and its problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from watchkeeper.core.config import CONFIG_NAME, ConfigError, ConfigIssue, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / CONFIG_NAME
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(tmp_path: Path, text: str) -> list[ConfigIssue]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert all(issue.path == path for issue in caught.value.issues)
    return caught.value.issues


def one_issue(tmp_path: Path, text: str) -> ConfigIssue:
    issues = issues_of(tmp_path, text)
    assert len(issues) == 1, issues
    return issues[0]


def located(issue: ConfigIssue) -> tuple[int, str]:
    return issue.line, issue.key
