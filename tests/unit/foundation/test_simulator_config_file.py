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
