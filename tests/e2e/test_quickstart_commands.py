"""The tutorial's quick start (docs/tutorial/quickstart.md), followed literally, run in bash.

The fenced block that starts the simulator is run line by line in one bash process, in an
empty folder, with the installed ``leadflow`` first on the PATH. The only changes: port 8780
becomes a free port, and after the line that starts the simulator in the background the
script waits until it answers (as a person would before typing the next line).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorial" / "quickstart.md"
MARK = "@@@ "


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _block() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    block = next(b for b in blocks if "leadflow simulator" in b)
    return [line for line in block.splitlines() if line.strip()]


def _script(lines: list[str], port: int) -> str:
    out = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for line in lines:
        line = line.replace("8780", str(port))
        if line.lstrip().startswith("#"):
            continue
        out.append(f"printf '\\n%s\\n' {shlex.quote(MARK + line)}")
        out.append(line)
        if line.rstrip().endswith("&"):
            out.append(
                f"for _ in $(seq 1 100); do curl -s -o /dev/null "
                f"http://127.0.0.1:{port}/_sim/clock && break; sleep 0.1; done"
            )
    return "\n".join(out) + "\n"


def _outputs(stdout: str) -> dict[str, str]:
    """Each command's output, keyed by the command's first words."""
    found: dict[str, str] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):]
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def _output_of(outputs: dict[str, str], startswith: str, contains: str = "") -> str:
    return next(v for k, v in outputs.items() if k.startswith(startswith) and contains in k)


@pytest.mark.e2e
def test_quickstart_commands_work_as_written(tmp_path: Path) -> None:
    lines = _block()
    assert any(line.startswith("leadflow run --once") for line in lines)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""  # parallel tests must not share port 9464
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", _script(lines, port)], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=55, check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    outputs = _outputs(done.stdout)

    upload = json.loads(_output_of(outputs, "curl", "/bulk/v1/leads.json"))
    assert upload["success"] is True
    assert upload["result"][0]["batchId"] == 1001
    status = json.loads(_output_of(outputs, "curl", "/bulk/v1/leads/batch/1001.json"))
    assert status["success"] is True and status["result"][0]["batchId"] == 1001
    leads = json.loads(_output_of(outputs, "curl", "/_sim/leads"))
    assert [(lead["firstName"], lead["lastName"]) for lead in leads] == [("Ada", "Lovelace")]

    assert re.search(r"files:.*complete 1", _output_of(outputs, "leadflow status"))
    report = json.loads(_output_of(outputs, "cat var/results/"))
    assert report["status"] == "complete"
    assert report["rows"]["total"] == 2 and report["rows"]["imported"] == 2
    assert report["uploads"][0]["batchId"] > 1001  # a second batch, sent by leadflow
    assert (tmp_path / "var" / "archive").is_dir()
    assert not list((tmp_path / "var" / "inbox").glob("*.csv"))
