"""Run arguments as text -> checked values: the command line's and the notebooks' parameters.

The commands that run something share one set of arguments (:func:`add_run_arguments`:
``--profile``, ``--run``, ``--data``, ``--configs``, ``--folds``, ``--set FIELD=VALUE``), and the
notebooks take the same things as papermill parameters (text). Both are checked here, once,
before anything trains: a wrong value raises :class:`cxrlib.core.errors.UserError` naming it and
what to do (the command line prints that as one line and exits 2).

``--data`` means one thing everywhere: the folder of the real sources, for a real-data profile
(default ``$CXRLIB_DATA`` or ``../shared/data``); given without ``--profile`` it picks the paper's
profile, and with a synthetic profile it is an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from cxrlib.core import paths
from cxrlib.core.errors import UserError
from cxrlib.core.profiles import PROFILES, Profile, get_profile, parse_config
from cxrlib.experiment import runs

#: The real sources' folders a data folder may hold (see cxrlib.data.sources and `download --list`).
SOURCE_FOLDERS = ("cohen", "kermany", "nih", "nih_rxtorax", "hannover")


@dataclasses.dataclass(frozen=True)
class RunChoice:
    """What a command was asked to run, checked."""

    profile: Profile
    run: str
    data: Path | None          # the real sources' folder (None: the default, or synthetic)
    configs: list[str] | None  # None: the profile's
    folds: list[int] | None    # None: all
    overrides: dict


def add_run_arguments(parser: argparse.ArgumentParser, selection: bool = True) -> None:
    parser.add_argument("--profile", default=None,
                        help="run profile, one of " + ", ".join(PROFILES) + " (cxrlib/core/profiles.py;"
                             " default: 'default', or 'paper' when --data is given)")
    parser.add_argument("--run", default=None,
                        help="run name: letters, digits, '-', '_', '.' (default: the profile's "
                             "name, plus the --set overrides if any)")
    parser.add_argument("--data", default=None,
                        help="folder of the real sources (cohen/, kermany/, nih/, ...), for a "
                             "real-data profile; default: $CXRLIB_DATA or ../shared/data")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a profile setting, e.g. --set epochs=3 (repeatable)")
    if selection:
        parser.add_argument("--configs", default="",
                            help="comma-separated configurations, e.g. from_scratch,fine_tune_3 "
                                 "(default: the profile's)")
        parser.add_argument("--folds", default="",
                            help="comma-separated test folds, e.g. 0,1 (default: all)")


def run_choice(args: argparse.Namespace) -> RunChoice:
    """The command line's run arguments, checked (see :func:`choose`)."""
    return choose(args.profile, args.run, args.data, getattr(args, "configs", ""),
                  getattr(args, "folds", ""), args.set)


def choose(profile: str | None = None, run: str | None = None, data: str | None = None,
           configs: str = "", folds: str = "", settings=()) -> RunChoice:
    """The profile, run name, data folder, configurations and folds asked for, each checked.

    The command line and the notebooks' papermill parameters call this alike (a notebook's
    empty ``run`` or ``data`` parameter means the default: pass None).
    """
    data_dir = checked_data_dir(data) if data is not None else None
    name = profile or ("paper" if data_dir else "default")
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}", f"choose one of {', '.join(PROFILES)}")
    overrides = parse_overrides(PROFILES[name], list(settings))
    try:
        chosen = get_profile(name, **overrides)
    except ValueError as e:
        raise UserError(f"--set: {e}", "see the profile's fields in cxrlib/core/profiles.py") from None
    if data_dir is not None and chosen.dataset != "real":
        raise UserError(f"--data is for real-data profiles; profile {name!r} uses built-in "
                        f"synthetic data", "add --profile paper-bundle (or another real-data "
                                           "profile), or leave --data out")
    # Default: the profile's name, plus the overrides (results of other settings never mix).
    run_name = paths.check_run_name(run) if run is not None else \
        runs.override_run_name(chosen.name, overrides)
    return RunChoice(chosen, run_name, data_dir, checked_configs(chosen, configs),
                     checked_folds(chosen, folds, "--folds"), overrides)


def checked_data_dir(text: str) -> Path:
    """``--data``: an existing folder holding at least one source in its original layout."""
    folder = Path(text).expanduser()
    if not folder.exists():
        raise UserError(f"--data {text}: no such folder",
                        "give the folder that holds cohen/, kermany/, nih/ (see `python -m "
                        "cxrlib download --list`)")
    if not folder.is_dir():
        raise UserError(f"--data {text}: not a folder", "give the folder that holds the sources")
    if not any((folder / name).is_dir() for name in SOURCE_FOLDERS):
        raise UserError(f"--data {text}: holds none of the sources' folders "
                        f"({', '.join(n + '/' for n in SOURCE_FOLDERS)})",
                        "point --data at the folder that holds them; `python -m cxrlib download "
                        "--list` says what goes where")
    return folder.resolve()


def split_list(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def checked_configs(profile: Profile, text: str) -> list[str] | None:
    configs = split_list(text)
    for config in configs:
        try:
            parse_config(config)
        except ValueError:
            raise UserError(f"configuration {config!r} is unknown",
                            "use off_the_shelf, fine_tune_<blocks> (e.g. fine_tune_3) or "
                            f"from_scratch; profile {profile.name!r} runs "
                            f"{','.join(profile.configs)}") from None
    return configs or None


def checked_folds(profile: Profile, text: str, option: str) -> list[int] | None:
    items = split_list(text)
    folds = []
    for item in items:
        if not item.isdigit() or int(item) >= profile.n_folds:
            raise UserError(f"{option} {text}: {item!r} is not a fold of profile "
                            f"{profile.name!r}", f"folds are numbered 0..{profile.n_folds - 1}")
        folds.append(int(item))
    return folds or None


def parse_overrides(profile: Profile, settings: list[str]) -> dict:
    """``["epochs=3", "mixed_precision=true"]`` -> typed overrides of the profile's fields."""
    fields = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)}
    known = ", ".join(sorted(k for k in fields if k != "name"))
    overrides = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or key not in fields or key == "name":
            raise UserError(f"--set {setting!r}: not FIELD=VALUE with a profile field",
                            f"fields are {known}")
        overrides[key] = typed_value(setting, key, fields[key], text)
    return overrides


def typed_value(setting: str, key: str, current, text: str):
    """``text`` as the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, (int, float, str)):
            return type(current)(text)
        if isinstance(current, tuple):
            return tuple(t.strip() for t in text.split(",") if t.strip())
        return json.loads(text)  # dicts (learning_rates)
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(
            type(current), "JSON such as {\"from_scratch\": 0.001}")
        raise UserError(f"--set {setting!r}: {key} takes {kind}",
                        f"e.g. --set {key}={json.dumps(current) if not isinstance(current, bool) else 'true'}") from None


def checked_results_root(text: str | None) -> Path | None:
    """``--results``: a folder that exists or can be made, and can be written."""
    if text is None:
        return None
    root = Path(text).expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"--results {text}: is a file, not a folder", "give a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".cxrlib-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--results {text}: cannot write there ({e.strerror})",
                        "give a folder you can write to") from None
    return root.resolve()
