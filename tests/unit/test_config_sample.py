"""etc/custos/custos.conf.sample is what oslo-config-generator makes today."""

from __future__ import annotations

from oslo_config import generator

from tests.conftest import REPO_ROOT


def test_sample_configuration_is_current(tmp_path):
    output = tmp_path / "custos.conf.sample"

    generator.main(["--config-file",
                    str(REPO_ROOT / "etc" / "oslo-config-generator" / "custos.conf"),
                    "--output-file", str(output)])

    checked_in = (REPO_ROOT / "etc" / "custos" / "custos.conf.sample").read_text()
    assert output.read_text() == checked_in, (
        "regenerate with: .venv/bin/oslo-config-generator "
        "--config-file etc/oslo-config-generator/custos.conf")
