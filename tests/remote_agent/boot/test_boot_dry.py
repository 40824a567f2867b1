"""`remote-agent boot --dry-run` / DRYRUN: every step printed, nothing changed, no secret shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.remote_agent.boot.conftest import assert_no_secrets
from tests.testbed.sshd import fingerprint, generate_key


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.timeout(60)
def test_dry_run_prints_every_step_and_changes_nothing(make_boot, boot_root):
    before = snapshot(boot_root)
    run = make_boot("--dry-run", "--exit-on-error",
                    env={"MODEL": "org/repo:Q4_K_M", "IDLE_STOP_MINUTES": "30"}).start()
    assert run.wait_exit() == 0
    out = run.output()
    assert snapshot(boot_root) == before
    for step in ("would generate the ed25519 host key", "would generate the ecdsa host key",
                 "would add 1 key(s) from PUBLIC_KEY", "would check the sshd configuration",
                 "would start sshd", "would start the agent daemon", "MODEL=org/repo:Q4_K_M",
                 "would stop this pod through POST", "dry run complete: nothing was changed"):
        assert step in out, step
    assert "podtui tunnel podtest123" in out
    port = run.env["PORT"]
    assert f"ssh -N -L 5002:127.0.0.1:{port} root@203.0.113.7 -p 40022" in out
    assert "HF_TOKEN=<set, hidden>" in out
    assert_no_secrets(out)


@pytest.mark.timeout(60)
def test_dryrun_env_with_existing_keys_prints_their_block(make_boot, boot_root):
    key_dir = boot_root / "workspace" / ".podtui" / "ssh"
    key_dir.mkdir(parents=True)
    ed = generate_key(key_dir / "ssh_host_ed25519_key")
    ecdsa = generate_key(key_dir / "ssh_host_ecdsa_key", kind="ecdsa")
    before = snapshot(boot_root)
    run = make_boot("--exit-on-error", env={"DRYRUN": "1"}).start()
    assert run.wait_exit() == 0
    out = run.output()
    assert snapshot(boot_root) == before
    assert f"ssh-ed25519 {fingerprint(Path(f'{ed}.pub'))} " in out
    assert f"ecdsa-sha2-nistp256 {fingerprint(Path(f'{ecdsa}.pub'))} " in out
    assert_no_secrets(out)


@pytest.mark.timeout(60)
def test_dryrun_in_a_pod_stays_up_instead_of_restart_looping(make_boot):
    run = make_boot(env={"DRYRUN": "true"}).start()
    run.wait_for("staying up")
    assert run.proc.poll() is None
    assert run.terminate() == 0


@pytest.mark.timeout(60)
def test_bad_variable_is_named_with_its_fix(make_boot):
    run = make_boot("--exit-on-error", env={"PORT": "fivethousand"}).start()
    assert run.wait_exit() == 2
    assert "PORT='fivethousand' is not a whole number" in run.output()
    assert not (Path(run.root) / "workspace" / ".podtui").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, value, said", [
    ("ENGINE", "bogus", "ENGINE='bogus' is not supported"),
    ("CTX", "abc", "CTX='abc' is neither a number of tokens nor 'auto'"),
    ("PARALLEL", "0", "PARALLEL=0 must be at least 1"),
    ("ARGS", "'x", "ARGS cannot be split"),
])
def test_a_dry_run_refuses_what_the_daemon_would_refuse(make_boot, boot_root, name, value, said):
    before = snapshot(boot_root)
    run = make_boot("--dry-run", env={name: value}).start()
    assert run.wait_exit() == 2
    assert said in run.output() and "dry run complete" not in run.output()
    assert snapshot(boot_root) == before


@pytest.mark.timeout(60)
def test_a_dry_run_would_generate_the_engine_key_and_prints_no_users_key(make_boot, boot_root):
    before = snapshot(boot_root)
    run = make_boot("--dry-run", "--exit-on-error").start()
    assert run.wait_exit() == 0
    assert "would generate the engine's API key into" in run.output()
    assert snapshot(boot_root) == before

    users_key, args_key = "users-key-never-print-5e2a", "args-key-never-print-8c1d"
    run = make_boot("--dry-run", "--exit-on-error",
                    env={"API_KEY": users_key, "ENGINE": "koboldcpp",
                         "ARGS": f"--threads 2 --password={args_key}"}).start()
    assert run.wait_exit() == 0
    out = run.output()
    assert users_key not in out and args_key not in out
    assert "API_KEY=<set, hidden>" in out and "ARGS=--threads 2 '--password=***'" in out
    assert "the engine requires the API key from ARGS" in out  # ARGS's key wins, as the daemon does
    assert snapshot(boot_root) == before


@pytest.mark.timeout(60)
def test_api_key_none_is_a_warning_in_the_boot_log(make_boot):
    run = make_boot("--dry-run", "--exit-on-error", env={"API_KEY": "none"}).start()
    assert run.wait_exit() == 0
    out = run.output()
    assert "[boot] WARNING: the engine runs WITHOUT an API key (API_KEY=none)" in out
    assert "API_KEY=none" in out and "host keys: none yet" in out  # the word "none" is no secret to mask


@pytest.mark.timeout(60)
def test_a_key_the_engines_cannot_take_is_refused_before_anything_starts(make_boot, boot_root):
    run = make_boot("--dry-run", env={"API_KEY": "has space"}).start()
    assert run.wait_exit() == 2
    assert "API_KEY holds characters an engine key cannot have" in run.output()
