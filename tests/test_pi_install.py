"""The Raspberry Pi install script, staged into a directory: a working agent in its own venv,
the config in /etc (never overwritten), and a hardened systemd unit that systemd accepts."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).parent.parent
SCRIPT = REPO / "deploy" / "pi" / "install.sh"


def test_staged_install_gives_a_runnable_agent_and_a_valid_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = {**os.environ, "TRYGGHEIM_INSTALL_ROOT": str(root)}
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, timeout=900)

    agent = root / "opt/tryggheim/venv/bin/tryggheim"
    help_text = subprocess.run(
        [str(agent), "edge", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--config" in help_text

    config = root / "etc/tryggheim/edge.toml"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert tomllib.loads(config.read_text())["outbox_path"] == "/var/lib/tryggheim/outbox.db"

    unit = root / "etc/systemd/system/tryggheim-edge.service"
    text = unit.read_text()
    assert "User=tryggheim" in text and "CapabilityBoundingSet=\n" in text
    # systemd checks the unit (directives, and that ExecStart is executable) on a copy that
    # points at the staged agent.
    check = tmp_path / "tryggheim-edge.service"
    check.write_text(text.replace("/opt/tryggheim/", f"{root}/opt/tryggheim/"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(check)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr

    # Running it again (an upgrade) keeps the administrator's config.
    config.write_text(config.read_text() + "\n# edited by IT\n")
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, timeout=900)
    assert config.read_text().endswith("# edited by IT\n")
