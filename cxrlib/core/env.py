"""The environment a result was made in: packages, Keras backend, device, git commit, host.

Stored in every fold's ``fold.json`` so that a number in the book can be traced to the machine
and the code that produced it.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata

from cxrlib import __version__
from cxrlib.core import paths

PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "numpy",
            "pandas", "scikit-learn", "cxrlib")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result (those installed)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "cxrlib" not in versions:  # run from a checkout, not installed
        versions["cxrlib"] = __version__
    return versions


def keras_backend() -> str:
    import keras  # heavy (it loads its backend); only folds being trained ask for it

    return keras.backend.backend()


@lru_cache(maxsize=1)
def accelerators() -> tuple[str, ...]:
    """Names of the GPUs (or TPUs) the Keras backend sees; empty on a CPU-only machine."""
    backend = keras_backend()
    if backend == "jax":
        import jax  # optional: the backend in use, present only where it is installed

        return tuple(d.device_kind for d in jax.devices() if d.platform != "cpu")
    if backend == "tensorflow":
        import tensorflow as tf  # optional, as above

        gpus = tf.config.list_physical_devices("GPU")
        return tuple(tf.config.experimental.get_device_details(g).get("device_name", g.name)
                     for g in gpus)
    if backend == "torch":
        import torch  # optional, as above

        return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return ()


def has_accelerator() -> bool:
    return bool(accelerators())


def cpu_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def device_description() -> str:
    gpus = accelerators()
    if gpus:
        return f"{len(gpus)} x {gpus[0]}" if len(set(gpus)) == 1 else ", ".join(gpus)
    return f"CPU: {cpu_description()}"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit, with "+dirty" if tracked files changed; "unknown" outside git.

    ``CXRLIB_GIT_COMMIT`` names it where the code travels without its ``.git`` (a GPU machine
    that receives a copy of the working tree).
    """
    if os.environ.get("CXRLIB_GIT_COMMIT"):
        return os.environ["CXRLIB_GIT_COMMIT"]
    try:
        cwd = str(paths.root())
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout
        return commit + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe() -> dict:
    """Everything above, as one JSON-ready dict."""
    return {
        "packages": package_versions(),
        "keras_backend": keras_backend(),
        "device": device_description(),
        "accelerator": has_accelerator(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
