"""Where presets come from and how they are kept: the packaged files and a user `presets_dir`,
parsed once and served from memory. A user file is parsed again only when its inode, mtime, size
or type changes, so `presets` requests cost a folder listing, and an edit shows up at the next
call. User files are opened without following symlinks or blocking on a FIFO, must be regular
files of at most `MAX_PRESET_FILE_BYTES`, and a bad one is reported by name while the others load
(`Catalog.problems`). Standard library only, like `catalog`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from ca_server.presets.catalog import (
    Preset,
    PresetFileError,
    UnknownPresetError,
    brief,
    parse_preset,
)

MAX_PRESET_FILE_BYTES = 64 * 1024  # the biggest packaged preset is ~1 KiB


def _packaged_files() -> dict[str, tuple[str, Callable[[], str]]]:
    data = resources.files("ca_server.presets").joinpath("data")
    return {
        entry.name[:-5]: (f"ca_server/presets/data/{entry.name}", entry.read_text)
        for entry in data.iterdir()
        if entry.name.endswith(".toml")
    }


def _read_user_file(path: Path) -> str:
    """A user preset file's text: a regular file (no symlink, FIFO or device), at most
    MAX_PRESET_FILE_BYTES, UTF-8. Opened non-blocking so a FIFO cannot stall the daemon."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PresetFileError(f"{path}: cannot read ({exc.strerror}); use a regular file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PresetFileError(f"{path}: not a regular file; presets must be plain .toml files")
        data = os.read(fd, MAX_PRESET_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PRESET_FILE_BYTES:
        raise PresetFileError(f"{path}: larger than {MAX_PRESET_FILE_BYTES} bytes; not a preset")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetFileError(f"{path}: not UTF-8 text ({exc.reason})") from None


@dataclass(frozen=True)
class Catalog:
    """Every preset that loaded, in menu order, and one line per file that did not."""

    presets: tuple[Preset, ...]
    problems: Mapping[str, str]  # preset name -> the line naming its file and what is wrong

    def get(self, name: str) -> Preset:
        """The preset `name`; PresetFileError if its file is bad, else UnknownPresetError."""
        if name in self.problems:
            raise PresetFileError(self.problems[name])
        for preset in self.presets:
            if preset.name == name:
                return preset
        valid = ", ".join(preset.name for preset in self.presets)
        raise UnknownPresetError(f"unknown preset {brief(name)}; valid presets: {valid}")


_Parsed = Preset | PresetFileError
# Parsed once per process: packaged files by name, user files by (path, lstat signature), so a
# `presets` request costs a folder listing, not a TOML parse per file.
_packaged: dict[str, _Parsed] = {}
_user_cache: dict[tuple[str, tuple[int, ...]], _Parsed] = {}
_USER_CACHE_LIMIT = 4096


def _parse_guarded(name: str, label: str, read: Callable[[], str]) -> _Parsed:
    try:
        return parse_preset(read(), label, expected_name=name)
    except PresetFileError as exc:
        return exc
    except (OSError, UnicodeDecodeError) as exc:
        return PresetFileError(f"{label}: cannot read ({exc})")


def _user_entries(presets_dir: Path) -> dict[str, _Parsed]:
    directory = Path(presets_dir)
    if not directory.is_dir():
        raise PresetFileError(f"{directory}: presets_dir is not a directory; create it or unset it")
    found: dict[str, _Parsed] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        key = (str(path), (info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode))
        if key not in _user_cache:
            if len(_user_cache) >= _USER_CACHE_LIMIT:
                _user_cache.clear()
            _user_cache[key] = _parse_guarded(
                path.stem, str(path), lambda p=path: _read_user_file(p)
            )
        found[path.stem] = _user_cache[key]
    return found


def catalog(presets_dir: Path | None = None) -> Catalog:
    """The packaged presets plus those in `presets_dir` (a file there overrides the packaged one
    of the same name). A user file is parsed again only when its inode, mtime, size or type
    changed, so an edit is picked up at the next call."""
    if not _packaged:
        _packaged.update(
            {name: _parse_guarded(name, *source) for name, source in _packaged_files().items()}
        )
    entries = dict(_packaged)
    if presets_dir is not None:
        entries.update(_user_entries(presets_dir))
    presets = [entry for entry in entries.values() if isinstance(entry, Preset)]
    problems = {
        name: str(entry) for name, entry in entries.items() if not isinstance(entry, Preset)
    }
    presets.sort(key=lambda preset: (preset.order, preset.name))
    return Catalog(tuple(presets), MappingProxyType(problems))


def load_all(presets_dir: Path | None = None) -> list[Preset]:
    """Every preset, validated, sorted by (order, name); PresetFileError for the first bad file
    (use `catalog` to load the others anyway)."""
    found = catalog(presets_dir)
    if found.problems:
        raise PresetFileError(next(iter(found.problems.values())))
    return list(found.presets)


def load_one(name: str, presets_dir: Path | None = None) -> Preset:
    """One preset by name; UnknownPresetError lists the valid names, PresetFileError names a bad
    file of that name."""
    return catalog(presets_dir).get(name)
