"""config/README.md is what `python -m irno.configdoc` writes: every config key, generated from the
schema and the settings dataclasses, so that it cannot drift from them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from workflow_copy import ROOT

from irno.configdoc import COMMAND, SETTINGS, render


def test_config_readme_is_generated_from_the_schema_and_the_dataclasses():
    written = (ROOT / "config" / "README.md").read_text()
    assert written == render(), f"config/README.md is out of date: regenerate it with `{COMMAND}`"


def test_every_key_of_every_settings_dataclass_is_documented():
    text = render()
    for key, cls in SETTINGS.items():
        for f in dataclasses.fields(cls):
            assert f"| `{key}.{f.name}` |" in text, (key, f.name)
    for key in ("run_name", "report.reported", "runs.experiments", "roma.experiments.data_noise.vary"):
        assert f"| `{key}` |" in text, key


def test_the_command_writes_the_document():
    out = subprocess.run([sys.executable, "-m", "irno.configdoc"], capture_output=True, text=True, check=True)
    assert out.stdout == render()
