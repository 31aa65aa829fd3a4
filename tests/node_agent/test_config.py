"""The agent's TOML config: the shipped example is valid; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.config import ConfigError, DicomSection, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_config_is_valid() -> None:
    config = load_config(ROOT / "deploy" / "agent.example.toml")
    assert config.hub.node_url.startswith("https://")
    assert config.upload.chunk_size_bytes == 1 << 20
    assert config.deidentify.pixel_learned == "auto"  # the learned text detector's setting
    # the example listens where the conformance statement says the default is
    assert config.dicom.host == DicomSection.model_fields["host"].default == "127.0.0.1"
    assert "`127.0.0.1:11112`" in (ROOT / "docs" / "conformance.md").read_text()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[dicom]\nport = 70000\n", "dicom.port"),
        ('[dicom]\nae_title = "WAY_TOO_LONG_FOR_AN_AE"\n', "dicom.ae_title"),
        ('[upload]\noffpeak_windows = ["after dinner"]\n', "upload.offpeak_windows"),
        ('[deidentify]\npixel_learned = "sometimes"\n', "deidentify.pixel_learned"),
        ("[pipeline]\nquiet_period_seconds = -1\n", "pipeline.quiet_period_seconds"),
        ('[destinations]\norg = "x"\n', "destinations"),
        (
            '[answering]\n[[answering.rules]]\norg = "org-b"\nmode = "anonymous"\n',
            "answering.rules.0.mode",
        ),
        (
            '[answering]\n[[answering.rules]]\norg = "org-b"\nmode = "de-identified"\n',
            "answering.rules.0",
        ),
    ],
)
def test_invalid_settings_are_named(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\ndata_dir = "data"\n[hub]\npublic_url = "https://h:1"\n'
        'node_url = "https://h:2"\nca_file = "ca.pem"\n' + toml
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert key in str(error.value)


def test_broken_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
