from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import cli
from orchestrator.simulator import SimulatorConfig

CONFIG = Path(__file__).resolve().parents[3] / "config" / "simulator.toml"


def test_example_simulator_config_holds_the_defaults() -> None:
    assert SimulatorConfig.from_toml(CONFIG) == SimulatorConfig()


def test_example_extra_field_block_is_valid(tmp_path: Path) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    block = text[text.index("# [[extra_fields]]") :].split("\n\n")[0]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    path = tmp_path / "sim.toml"
    path.write_text(uncommented + "\n", encoding="utf-8")
    config = SimulatorConfig.from_toml(path)
    assert config.extra_fields[0].display_name == "Favourite Colour"


async def test_bad_simulator_config_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("max_queued = -3\n", encoding="utf-8")
    assert await cli(["simulator", "--config", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leadflow: invalid setting simulator.max_queued")
    path.write_text("max_queued = [\n", encoding="utf-8")
    assert await cli(["simulator", "--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_typo_in_faults_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("[faults]\nhttp_500_probabilty = 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="http_500_probabilty"):
        SimulatorConfig.from_toml(path)


async def test_port_in_use_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert await cli(["simulator", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in err and "Traceback" not in err
