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
