"""The preset catalogue: the prototype's 23 presets, ordering, validation errors, user overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ca_server.presets import (
    DEFAULT_PRESET,
    PresetFileError,
    UnknownPresetError,
    list_presets,
    load_preset,
    preset_names,
)

UNIFIED_ORDER = [
    "amoeba", "lava_lamp", "tide_pool", "sl_gliders", "sl_worms", "sl_pulse",
    "mnca_mitosis", "mnca_worm", "labyrinth", "tentacles", "medusa",
]  # fmt: skip
PROTOTYPE_TITLES = {
    "amoeba": "Lenia Glider", "coral": "Lenia Branch", "heartbeat": "Lenia Spiral",
    "jellyfish": "Lenia Pulse", "lava_lamp": "Lenia Blob", "nebula": "Lenia Cloud",
    "tide_pool": "Lenia Wave", "mycelium": "Lenia Thread", "sl_gliders": "SmoothLife Glider",
    "sl_worms": "SmoothLife Worm", "sl_elastic": "SmoothLife Elastic",
    "sl_pulse": "SmoothLife Pulse", "sl_chaos": "SmoothLife Chaos",
    "mnca_soliton": "MNCA Soliton", "mnca_mitosis": "MNCA Mitosis", "mnca_worm": "MNCA Worm",
    "mnca_hunt": "MNCA Hunt", "mnca_coral": "MNCA Coral", "reef": "GS Coral",
    "deep_sea": "GS Drift", "medusa": "GS Medusa", "labyrinth": "GS Labyrinth",
    "tentacles": "GS Vortex",
}  # fmt: skip

CORAL_TEXT = (Path(__file__).parents[2] / "ca_server/presets/data/coral.toml").read_text()


def test_all_prototype_presets_with_their_titles_and_the_viewer_eleven_first():
    infos = list_presets()
    titles = {info.name: info.title for info in infos}
    for name, title in PROTOTYPE_TITLES.items():
        assert titles.get(name) == title, name
    assert [info.name for info in infos[:11]] == UNIFIED_ORDER
    assert DEFAULT_PRESET == "coral" and "coral" in titles
    assert preset_names() == [info.name for info in infos]
    assert all(info.description for info in infos)


def test_prototype_parameters_carry_over():
    amoeba = load_preset("amoeba")
    assert amoeba.engine == "lenia" and amoeba.speed == pytest.approx(1.56)
    assert amoeba.engine_params["peaks"] == (0.5, 0.85)
    assert amoeba.flow["swirl"] == pytest.approx(0.5) and amoeba.flow["vertical"] == 0.0
    worm = load_preset("mnca_worm")
    assert worm.engine_params["rings"][2] == (12.0, 18.0)
    assert worm.render["palette"] == "deep_coral"
    tide = load_preset("tide_pool")
    assert tide.render["thickness"] == pytest.approx(4.7) and tide.render["hue"] == 0.9


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownPresetError) as caught:
        load_preset("no_such_preset")
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert "no_such_preset" in message and "coral" in message and "medusa" in message


def test_importing_presets_loads_only_the_standard_library():
    code = (
        "import sys, json; import ca_server.presets as p; p.list_presets(); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'scipy', 'cupy') or m.startswith(('ca_server.engines', 'ca_server.render')))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []


def test_user_file_overrides_and_adds(tmp_path):
    (tmp_path / "coral.toml").write_text(CORAL_TEXT.replace("T = 15", "T = 11"))
    extra = CORAL_TEXT.replace('name = "coral"', 'name = "my_coral"').replace(
        "order = 20", "order = -1"
    )
    (tmp_path / "my_coral.toml").write_text(extra)
    assert load_preset("coral", tmp_path).engine_params["T"] == 11
    assert load_preset("coral").engine_params["T"] == 15
    names = preset_names(tmp_path)
    assert names[0] == "my_coral" and names.count("coral") == 1


BAD_EDITS = [
    ("sigma = 0.01", "sigma = -0.01", "engine.sigma"),
    ("swirl = 0.35", "swirl = 2.5", "flow.swirl"),
    ("R = 20", "R = 20\nradius = 3", "engine.radius"),
    ('kind = "blobs"', 'kind = "soup"', "seed.kind"),
    ('engine = "lenia"', 'engine = "life"', "preset.engine"),
    ("widths = [0.18]", "widths = [0.18, 0.2]", "engine.widths"),
    ('palette = "oil_slick"', 'palette = "oil_slick"\nbrightness = 9', "render.brightness"),
    ("mu = 0.12", 'mu = "high"', "engine.mu"),
    ('name = "coral"', 'name = "coral2"', "preset.name"),
]


@pytest.mark.parametrize(("old", "new", "field"), BAD_EDITS)
def test_bad_field_names_file_and_field(tmp_path, old, new, field):
    assert old in CORAL_TEXT
    path = tmp_path / "coral.toml"
    path.write_text(CORAL_TEXT.replace(old, new, 1))
    with pytest.raises(PresetFileError) as caught:
        load_preset("coral", tmp_path)
    message = str(caught.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_missing_table_and_broken_toml(tmp_path):
    path = tmp_path / "coral.toml"
    path.write_text(CORAL_TEXT.split("[engine]")[0])
    with pytest.raises(PresetFileError, match="engine"):
        load_preset("coral", tmp_path)
    path.write_text("[preset\nname=")
    with pytest.raises(PresetFileError, match="not valid TOML"):
        list_presets(tmp_path)


def test_presets_dir_must_exist(tmp_path):
    with pytest.raises(PresetFileError, match="not a directory"):
        list_presets(tmp_path / "missing")
