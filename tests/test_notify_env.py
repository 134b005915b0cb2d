"""${VAR}s in notification targets: expanded from the keeper's environment when a message
is sent, never shown. Through the real CLI (`notify test`), a real local HTTP server and a
real command channel."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli
from notify_kit import endpoint

SECRETS = {"WK_HOOK_PATH": "p4th-secret", "WK_HOOK_KEY": "k3y9", "WK_PAGE_TOKEN": "t0ken-value"}


def test_a_webhook_url_gets_its_vars_at_send_time_and_the_log_masks_them(
    make_vault, tmp_path: Path
) -> None:
    with endpoint() as hook:
        hook.statuses = [500]
        vault = make_vault(
            f"""
            [notify.hook]
            webhook = "http://127.0.0.1:{hook.port}/hooks/${{WK_HOOK_PATH}}?key=${{WK_HOOK_KEY}}"
            attempts = 2
            """
        )
        result = run_cli("notify", "test", "hook", "--vault", str(vault), env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert [path for path, _body in hook.requests] == ["/hooks/p4th-secret?key=k3y9"] * 2
    said = result.stdout + result.stderr
    assert f"to webhook http://127.0.0.1:{hook.port}/hooks/***?key=***: attempt 1 of 2" in said
    assert "p4th-secret" not in said and "k3y9" not in said


def test_a_command_channels_argv_gets_its_vars_and_its_output_masks_them(make_vault) -> None:
    vault = make_vault(
        """
        [notify.pager]
        command = ["sh", "page.sh", "${WK_PAGE_FILE}", "${WK_PAGE_TOKEN}"]
        attempts = 1
        """
    )
    (vault / "page.sh").write_text('cat > "$1"\necho "token $2 refused" >&2\nexit 3\n')
    env = {**SECRETS, "WK_PAGE_FILE": "paged.json"}
    result = run_cli("notify", "test", "pager", "--vault", str(vault), env=env)
    assert result.returncode == 1
    assert '"event": "test"' in (vault / "paged.json").read_text()
    assert "command exit 3: token *** refused; giving up" in result.stderr
    assert "t0ken-value" not in result.stdout + result.stderr


def test_an_unset_var_is_not_sent_and_named(make_vault) -> None:
    vault = make_vault(
        """
        [notify.hook]
        webhook = "${WK_NOT_SET_HOOK}"
        """
    )
    result = run_cli("notify", "test", "hook", "--vault", str(vault))
    assert result.returncode == 1
    assert (
        "notify hook: test not sent: ${WK_NOT_SET_HOOK} is not set in the keeper's environment"
        in result.stderr
    )
