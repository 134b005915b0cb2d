"""Secrets kept out of the job logs: a multi-line value masked line by line, a secret or a
character straddling the 64 KiB cut of a line that never ends, and env_file errors that
name the file and line but never quote it. Real runs through a real keeper; the sink is
also fed directly (into a real log file) at every possible split of a secret."""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap
from datetime import UTC
from pathlib import Path

import pytest
from conftest import final_records, keeper_log

from watchkeeper.core.config import load_config
from watchkeeper.core.environment import MIN_SECRET_LENGTH, EnvFileError, Masker, read_env_file
from watchkeeper.core.keeper import Keeper
from watchkeeper.core.lock import acquire
from watchkeeper.core.logs import RotatingFile
from watchkeeper.core.output import MAX_PENDING, OutputSink


def pem(label: str = "PRIVATE KEY") -> str:
    """A PEM-shaped secret: random base64 body lines between the usual armour lines."""
    body = base64.b64encode(os.urandom(150)).decode()
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def windows(secret: str, size: int = 8) -> list[str]:
    """Every piece of `secret` long enough to give it away."""
    return [secret[index : index + size] for index in range(len(secret) - size + 1)]


def leaked(text: str, secret: str) -> list[str]:
    return [piece for piece in windows(secret) if piece in text]


# ---- the masker ------------------------------------------------------------------------


def test_each_line_of_a_multi_line_secret_is_masked_alone() -> None:
    key = pem()
    masker = Masker([key, "plain-secret-1"])
    for line in key.splitlines():
        assert masker(f"got: {line} (indented)") == "got: *** (indented)"
    assert masker(key) == "***"  # whole, not one mask per line
    assert masker(key.replace("\n", "\r\n")) == "\r\n".join(["***"] * len(key.splitlines()))
    assert masker("plain-secret-1 and -----END") == "*** and -----END"


def test_short_lines_of_a_multi_line_secret_are_left_alone() -> None:
    # Masking "ab" or "x" everywhere would mangle the output and hide nothing.
    masker = Masker(["ab\nx\n  \nlong-enough-line\nabcd"])
    assert masker("ab x abc") == "ab x abc"
    assert masker("[long-enough-line] abcd") == "[***] ***"
    assert len("abcd") == MIN_SECRET_LENGTH


# ---- the 64 KiB cut ----------------------------------------------------------------------


def sink_into(path: Path, secrets: list[str]) -> OutputSink:
    return OutputSink(RotatingFile(path, 10 << 20, 1), "r1", Masker(secrets), UTC)


SECRET = "cut-7Fq2-Zr8w-TOKEN-41a9"


@pytest.mark.parametrize("split", range(1, len(SECRET)))
def test_a_secret_straddling_the_cut_of_an_endless_line_is_masked_whole(
    tmp_path: Path, split: int
) -> None:
    log = tmp_path / "job.log"
    sink = sink_into(log, [SECRET, "other-secret-that-is-longer-than-the-first-one"])
    head = b"x" * (MAX_PENDING - split)
    sink.feed(head + SECRET[:split].encode())  # 64 KiB and no newline: a cut is due
    sink.feed(SECRET[split:].encode() + b" and on\n")
    sink.flush()
    text = log.read_text()
    assert leaked(text, SECRET) == []
    assert text.count("***") == 1 and "*** and on" in text
    assert text.count("x") == len(head)  # nothing lost on the way


def test_a_line_without_end_is_still_written_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    sink = sink_into(log, [SECRET])
    for _ in range(4):
        sink.feed(b"y" * MAX_PENDING)
    assert log.read_text().count("y") >= 3 * MAX_PENDING - len(SECRET)


def test_a_character_straddling_the_cut_is_written_whole(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    sink = sink_into(log, [])
    euro = "€".encode()
    sink.feed(b"z" * (MAX_PENDING - 1) + euro[:1])
    sink.feed(euro[1:] + b" end\n")
    sink.flush()
    text = log.read_text()
    assert "\ufffd" not in text and "€ end" in text


# ---- env_file errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "API_TOKEN: BADLINE-SECRET-5c2e91",
        "BADLINE-SECRET-5c2e91",
        "BADLINE-SECRET-5c2e91=value",
        "export BADLINE-SECRET-5c2e91",
        "YmFk/bGluZS1+zZWNyZXQtNWMyZTkx==",
    ],
)
def test_an_env_file_error_names_file_and_line_and_never_quotes_it(
    tmp_path: Path, line: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"# comment\nGOOD=1\n{line}\n")
    with pytest.raises(EnvFileError) as raised:
        read_env_file(env_file)
    message = str(raised.value)
    assert message.startswith(f"{env_file}:3: expected KEY=VALUE")
    assert "BADLINE" not in message and "YmFk" not in message and "5c2e91" not in message


def test_an_env_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(EnvFileError, match=r"\.env: env_file is not UTF-8 \(byte 9\)"):
        read_env_file(env_file)


# ---- through a real keeper ---------------------------------------------------------------

PRINT_LINES = """\
import os, sys
for line in os.environ["TLS_KEY"].splitlines():
    print("key line:", line, flush=True)
head, secret = os.environ["CUT_TOKEN"][:9], os.environ["CUT_TOKEN"][9:]
sys.stdout.buffer.write(b"x" * (65536 - 9) + head.encode())
sys.stdout.buffer.flush()
sys.stdout.buffer.write(secret.encode() + b" after the cut\\n")
"""


async def test_a_real_run_printing_a_pem_line_by_line_and_across_the_cut_is_masked(
    make_vault, monkeypatch
) -> None:
    key, cut_token = pem("RSA PRIVATE KEY"), "cut-token-8d0c-55ab-9e1f"
    monkeypatch.setenv("TLS_KEY", key)
    monkeypatch.setenv("CUT_TOKEN", cut_token)
    vault = make_vault(
        f"""
        [jobs.printer]
        command = [{json.dumps(sys.executable)}, "scripts/print_lines.py"]
        """
    )
    (vault / "scripts").mkdir(exist_ok=True)
    (vault / "scripts" / "print_lines.py").write_text(PRINT_LINES)
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    keeper.run_now("printer")
    assert await keeper.wait_idle(30)
    await keeper.stop(grace=5)
    assert keeper.lock is not None
    keeper.lock.release()
    log = (vault / "Logs" / "jobs" / "printer.log").read_text()
    assert log.count("key line: ***") == len(key.splitlines())
    assert "*** after the cut" in log
    for secret in (*key.splitlines()[1:-1], cut_token):
        assert leaked(log, secret) == [], secret


async def test_a_malformed_env_file_line_reaches_no_record_log_or_dashboard(make_vault) -> None:
    vault = make_vault(
        """
        [jobs.broken]
        command = ["true"]
        env_file = "secrets.env"
        """
    )
    (vault / "secrets.env").write_text(
        textwrap.dedent(
            """\
            DB_PASSWORD=fine-value-1
            API_TOKEN: BADLINE-SECRET-0f3a77
            """
        )
    )
    keeper = Keeper(load_config(vault / "watchkeeper.toml"), acquire(vault))
    await keeper.start()
    run_id = keeper.run_now("broken")
    assert await keeper.wait_idle(30)
    await keeper.stop(grace=5)
    assert keeper.lock is not None
    keeper.lock.release()
    record = final_records(vault)[run_id]
    assert record["status"] == "failure"
    assert record["error"].startswith(f"{vault / 'secrets.env'}:2: expected KEY=VALUE")
    assert "secrets.env:2" in keeper_log(vault)
    places = [path for path in (vault / "Logs").rglob("*") if path.is_file()]
    places.append(vault / "Dashboard.md")
    for path in places:
        assert "BADLINE" not in path.read_text(errors="replace"), path
