"""Fetch once, run offline: the Hugging Face models and data sets of a grid.

Compute nodes usually have no network. The download stage (``snakemake download``, and the
first jobs of every run; local rules, so they run where Snakemake runs) fetches every hub model
of the grid (:func:`download_model`, ``snapshot_download`` at the configured ``revision``) and
every hub data set config (:func:`download_data`, ``datasets.load_dataset``, which also prepares
the Arrow files an offline ``load_dataset`` reads) into one cache, ``hub.cache_dir`` (an
``HF_HOME``: models under ``hub/``, data sets under ``datasets/``).

Every job that loads a model or data calls :func:`use_offline_hub` first: ``HF_HUB_OFFLINE``,
``HF_DATASETS_OFFLINE`` and the cache variables are set before ``huggingface_hub``,
``datasets`` or ``transformers`` is imported (they read them once, at import), so no job
touches the network. A job loads a hub model from its cached snapshot folder
(:func:`local_model`, by id and revision); a model or data set missing from the cache is a
:class:`HubError` naming it, its revision and the cache, and saying to run ``snakemake
download`` on a machine with network.

The package never imports Snakemake: the workflow passes config values and paths.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

#: Files of a model repository no job reads, left out of the download (and of the offline
#: completeness check, which must skip the same files): the original checkpoints Llama
#: repositories ship besides the safetensors, GGUF copies, and other frameworks' weights.
SKIPPED_FILES = ("original/*", "*.gguf", "onnx/*", "*.onnx", "*.h5", "*.msgpack", "*.tflite", "*.ot")

#: The libraries that read the offline switches and cache locations once, at import.
HF_MODULES = ("huggingface_hub", "datasets", "transformers")


class HubError(RuntimeError):
    """A hub model or data set that is not in the cache, or that cannot be downloaded."""


# -- where the cache is ----------------------------------------------------------------------
def hub_home(hub: Mapping[str, Any] | None) -> Path | None:
    """``hub.cache_dir`` as an absolute path (an ``HF_HOME``; the workflow's config always has
    one); None when none is given: Hugging Face's own cache (``HF_HOME``)."""
    cache_dir = (hub or {}).get("cache_dir")
    return Path(cache_dir).expanduser().resolve() if cache_dir else None


def model_cache(home: Path | None) -> Path | None:
    """The model cache (``<home>/hub``, the ``HF_HUB_CACHE`` layout); None: the default."""
    return home / "hub" if home is not None else None


def data_cache(data: Mapping[str, Any], home: Path | None) -> Path | None:
    """The data set cache: ``data.cache_dir`` when given, else ``<home>/datasets``; None: the
    default (``HF_DATASETS_CACHE``)."""
    if data.get("cache_dir"):
        return Path(data["cache_dir"]).expanduser().resolve()
    return home / "datasets" if home is not None else None


def _shown(cache: Path | None, default: str) -> str:
    return str(cache) if cache is not None else f"{default} (Hugging Face's default cache)"


def not_downloaded(what: str, revision: str | None, cache: str) -> str:
    """The error of a model or data set missing from the cache of an offline job."""
    return (
        f"{what} at revision {revision or 'main'} is not in the Hugging Face cache {cache}: run "
        "`snakemake download` (same config) on a machine with network, with HF_TOKEN set for gated "
        "models, then run the grid again"
    )


# -- what a grid downloads -------------------------------------------------------------------
def is_hub_model(spec: Mapping[str, Any]) -> bool:
    """Whether a configured model is a Hugging Face id (not a GGUF package, not a local folder)."""
    return "gguf" not in spec and not Path(spec["path"]).is_dir()


class DataDownload(NamedTuple):
    """One hub data set config a grid reads (``name`` None: the data set's only config)."""

    dataset: str
    name: str | None
    revision: str | None

    @property
    def subset(self) -> str:
        """The config's name in the download marker's path (``default`` for ``name`` None)."""
        return self.name or "default"


def data_downloads(data: Mapping[str, Any], tasks: Iterable[str], languages: Iterable[str]) -> list[DataDownload]:
    """Every hub data set config the ``prepare_split`` jobs of ``tasks`` × ``languages`` read
    (each once; none for local data), with the revision ``data.revision`` pins for its data set."""
    from .data import SPLITS, hub_source
    from .tasks import get_task

    if data.get("source", "local") != "hf":
        return []
    revisions = data.get("revision") or {}
    languages = list(languages)
    found: dict[tuple[str, str | None], DataDownload] = {}
    for task in tasks:
        for lang in languages:
            if lang not in get_task(task).languages:
                continue
            for split in SPLITS:
                source = hub_source(task, split, lang)
                key = (source.dataset, source.config)
                found.setdefault(key, DataDownload(*key, revisions.get(source.dataset)))
    return list(found.values())


# -- the download jobs (on a machine with network) -----------------------------------------------
# A marker holds only what was fetched (ids, revision, commit or prepared folder), nothing about
# where the cache is: the jobs that load it depend on its content (Snakemake reruns a job for a
# newer input only when the input's checksum changed), so downloading the same files again, or
# into a moved cache, reruns nothing, and a branch that resolves to a new commit reruns them all.
def _write_marker(path: str | Path, entry: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def snapshot_folder(cache: Path, repo_id: str, commit: str) -> Path:
    """Where ``snapshot_download`` puts commit ``commit`` of model ``repo_id`` in ``cache``."""
    return cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def download_model(repo_id: str, revision: str | None, home: Path | None, marker: str | Path) -> str:
    """Fetch ``repo_id`` at ``revision`` (None: main) into the model cache, all files but
    :data:`SKIPPED_FILES`, and write ``marker`` (id, revision and the commit it resolved to)
    last. HF_TOKEN (or a stored login) is read for gated models. Returns the snapshot folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    cache = model_cache(home)
    log.info("downloading model %s at revision %s into %s", repo_id, revision or "main", _shown(cache, "HF_HUB_CACHE"))
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache, ignore_patterns=list(SKIPPED_FILES))
    except GatedRepoError:
        raise HubError(
            f"model {repo_id!r} is gated: accept its licence on https://huggingface.co/{repo_id} and set HF_TOKEN "
            "(or log in with `hf auth login`) on this machine"
        ) from None
    except RepositoryNotFoundError:
        raise HubError(
            f"model {repo_id!r}: no such repository on the Hub, or a private one and HF_TOKEN is not set"
        ) from None
    except RevisionNotFoundError:
        raise HubError(f"model {repo_id!r} has no revision {revision!r} (models.<id>.revision)") from None
    _write_marker(marker, {"repo_id": repo_id, "revision": revision, "commit": Path(folder).name})
    log.info("model %s: commit %s in %s", repo_id, Path(folder).name, folder)
    return str(folder)


def download_data(
    dataset: str, name: str | None, revision: str | None, cache: Path | None, marker: str | Path
) -> dict[str, int]:
    """Fetch and prepare one data set config (all its splits) with ``datasets.load_dataset``
    into ``cache`` (None: the default), so that an offline ``load_dataset`` of it finds the
    prepared files; write ``marker`` (rows per split, and the prepared folder relative to the
    cache) last. Returns the rows per split."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    log.info(
        "downloading data set %s config %s at revision %s into %s",
        dataset,
        name,
        revision or "main",
        _shown(cache, "HF_DATASETS_CACHE"),
    )
    try:
        loaded = datasets.load_dataset(dataset, name, revision=revision, cache_dir=str(cache) if cache else None)
    except DatasetNotFoundError as err:
        raise HubError(f"data set {dataset!r} config {name!r}: {err} (set HF_TOKEN for gated data sets)") from None
    rows = {split: part.num_rows for split, part in loaded.items()}
    folders = {Path(f["filename"]).parent for part in loaded.values() for f in part.cache_files}
    root = cache if cache is not None else Path(datasets.config.HF_DATASETS_CACHE)
    # named by the data set, config and a hash of its data files (their commit), not by the cache
    prepared = sorted(os.path.relpath(folder, root) for folder in folders)
    _write_marker(marker, {"dataset": dataset, "name": name, "revision": revision, "rows": rows, "prepared": prepared})
    log.info("data set %s config %s: %s", dataset, name, rows)
    return rows


def stale_download(marker: str | Path, cache: Path) -> str | None:
    """Why a download marker no longer holds in ``cache`` (None when it does): unreadable, or
    the snapshot folder or prepared data it names is not there (removed since, or the cache
    moved). Cheap (no Hugging Face import): run before every plan, so that what is missing is
    fetched again rather than failing the jobs that read it."""
    try:
        entry = json.loads(Path(marker).read_text(encoding="utf-8"))
        if "commit" in entry:
            folders = [snapshot_folder(cache, entry["repo_id"], entry["commit"])]
        else:
            folders = [cache / folder for folder in entry["prepared"]]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable"
    missing = [folder for folder in folders if not folder.is_dir()]
    if missing:
        return f"{missing[0]} is gone"
    return None


def drop_stale_downloads(markers: Mapping[str | Path, Path], say=None) -> list[Path]:
    """Remove each existing download marker (``marker → its cache``) that no longer holds
    (:func:`stale_download`), saying why (``say``, default stderr); the next run that needs it
    downloads again. Returns the markers removed."""
    say = say or (lambda line: print(line, file=sys.stderr))
    removed = []
    for marker, cache in markers.items():
        marker = Path(marker)
        if not marker.is_file():
            continue
        reason = stale_download(marker, cache)
        if reason is None:
            continue
        marker.unlink()
        say(f"{marker}: {reason}; removed, so `snakemake download` fetches it again")
        removed.append(marker)
    return removed


# -- jobs that load models and data (offline) ----------------------------------------------------
def offline_environment(home: Path | None) -> dict[str, str]:
    """The environment of a job that reads the hub cache only: the offline switches and, with
    a configured cache, its locations (over any the user set)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if home is not None:
        env |= {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_DATASETS_CACHE": str(home / "datasets")}
    return env


def use_offline_hub(hub: Mapping[str, Any] | None) -> Path | None:
    """Make this process read models and data from the hub cache only (``hub``: the config's
    ``hub`` block); returns the cache (:func:`hub_home`). Call it first in a job, before
    anything imports ``huggingface_hub``, ``datasets`` or ``transformers``: they read these
    variables once, at import, so it refuses to run after them."""
    imported = [name for name in HF_MODULES if name in sys.modules]
    if imported:
        raise RuntimeError(
            f"use_offline_hub must run before {', '.join(imported)} is imported (read at import: the job would not "
            "be offline)"
        )
    home = hub_home(hub)
    os.environ.update(offline_environment(home))
    log.info("Hugging Face Hub offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1); cache %s", home or "HF_HOME")
    return home


def local_model(path: str, source: Mapping[str, Any], home: Path | None) -> str:
    """The folder a job loads a model from: ``path`` itself for a local folder or a converted
    GGUF model; for a hub id (``source``, the job's ``model_fingerprint``, says ``hub``) its
    cached snapshot at ``source['revision']`` in the model cache, found without the network
    (:class:`HubError`, naming id, revision and cache, when it is not there)."""
    if source.get("source") != "hub":
        return path
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    revision = source.get("revision")
    cache = model_cache(home)
    try:
        return snapshot_download(
            path,
            revision=revision,
            cache_dir=cache,
            local_files_only=True,
            ignore_patterns=list(SKIPPED_FILES),
        )
    except LocalEntryNotFoundError:  # also a snapshot missing some of its files
        raise HubError(not_downloaded(f"model {path!r}", revision, _shown(cache, constants.HF_HUB_CACHE))) from None
