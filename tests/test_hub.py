"""Fetch once, run offline: the download stage's plan and jobs, and jobs that read the hub cache
with the network switched off (icldistill.hub). The Hub is never reached: the cache is built by
hand in the layout snapshot_download writes, and the download functions run against a stub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from icldistill.hub import (
    SKIPPED_FILES,
    DataDownload,
    HubError,
    data_downloads,
    download_data,
    download_model,
    drop_stale_downloads,
    local_model,
    offline_environment,
    use_offline_hub,
)

from .conftest import ROOT

MAIN, V1 = "a" * 40, "b" * 40


def hub_cache(home: Path, repo_id: str, model_dir: Path) -> Path:
    """A Hugging Face model cache under ``home`` built by hand, as ``snapshot_download`` lays it
    out: ``hub/models--<org>--<name>/snapshots/<commit>/`` and ``refs/<revision>`` naming the
    commit. ``main`` is ``model_dir``; tag ``v1`` the same model with a 1024-token context."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    for ref, commit in (("main", MAIN), ("v1", V1)):
        shutil.copytree(model_dir, repo / "snapshots" / commit)
        (repo / "refs" / ref).write_text(commit)
    config = repo / "snapshots" / V1 / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"max_position_embeddings": 1024}))
    return repo


@pytest.fixture
def cached_hub(tmp_path, tiny_model_dir) -> Path:
    """An ``HF_HOME`` holding the tiny model as hub id ``icl-test/tiny`` (main and v1)."""
    home = tmp_path / "hf"
    hub_cache(home, "icl-test/tiny", tiny_model_dir)
    return home


def hub_source(revision):
    return {"source": "hub", "revision": revision}


# -- (a) the offline loading path --------------------------------------------------------------------
def test_a_job_loads_a_hub_model_from_the_cache_by_id_and_revision(cached_hub):
    from icldistill.models import load_causal_lm

    snapshots = cached_hub / "hub" / "models--icl-test--tiny" / "snapshots"
    assert Path(local_model("icl-test/tiny", hub_source(None), cached_hub)) == snapshots / MAIN
    assert Path(local_model("icl-test/tiny", hub_source("v1"), cached_hub)) == snapshots / V1
    assert Path(local_model("icl-test/tiny", hub_source(V1), cached_hub)) == snapshots / V1
    model = load_causal_lm(local_model("icl-test/tiny", hub_source("v1"), cached_hub), "float32", device="cpu")
    assert model.config.max_position_embeddings == 1024
    # a local folder or a converted GGUF model is loaded from where it is
    assert local_model("results/models/smollm2-135m", {"source": "gguf"}, cached_hub) == "results/models/smollm2-135m"


# -- (b) a job's environment: offline, the configured cache ------------------------------------------
OFFLINE_JOB = """
import json, os, sys, time
from icldistill.hub import local_model, use_offline_hub

home = use_offline_hub({"cache_dir": sys.argv[1]})
names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE")
seen = {"env": {k: os.environ.get(k) for k in names}}
from huggingface_hub import hf_hub_download

start = time.monotonic()
try:
    hf_hub_download("icl-test/not-cached", "config.json")
except Exception as err:
    seen["error"] = [type(e).__name__ for e in (err, err.__cause__, err.__context__) if e is not None]
seen["seconds"] = time.monotonic() - start
from transformers import AutoConfig, AutoModelForCausalLM

# transformers finds the snapshot by id and revision itself: the cache variables are the configured cache's
seen["context"] = AutoConfig.from_pretrained("icl-test/tiny", revision="v1").max_position_embeddings
model = AutoModelForCausalLM.from_pretrained(local_model("icl-test/tiny", {"source": "hub", "revision": "v1"}, home))
seen["loaded"] = model.config.max_position_embeddings
print(json.dumps(seen))
"""


def test_a_job_runs_offline_on_the_configured_cache(cached_hub, tmp_path):
    """What a workflow job does first (use_offline_hub), in a process of its own: the switches
    and the cache are set over the user's, a hub request fails at once without a connection
    attempt (the endpoint is an unroutable address: a request would wait for its timeout), and
    the cached model loads by id and revision."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"PYTHONPATH": str(ROOT / "src"), "HF_ENDPOINT": "http://192.0.2.1", "HF_HUB_CACHE": str(tmp_path / "other")}
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_JOB, str(cached_hub)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["env"] == {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(cached_hub),
        "HF_HUB_CACHE": str(cached_hub / "hub"),
    }
    assert "OfflineModeIsEnabled" in seen["error"], seen
    assert seen["seconds"] < 2, seen
    assert seen["context"] == seen["loaded"] == 1024


def test_going_offline_after_the_hub_libraries_are_imported_is_refused(monkeypatch):
    """They read the switches once, at import: set later, the job would still reach the network."""
    import huggingface_hub  # noqa: F401 - imported, as a job that imports too early would

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(RuntimeError, match="before huggingface_hub"):
        use_offline_hub({"cache_dir": "elsewhere"})
    assert "HF_HUB_OFFLINE" not in os.environ
    assert offline_environment(None) == {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# -- (d) what is not in the cache --------------------------------------------------------------------
def test_a_model_missing_from_the_cache_names_id_revision_cache_and_the_download(cached_hub):
    cache = cached_hub / "hub"
    for repo_id, revision in (("icl-test/absent", "v1"), ("icl-test/tiny", "v2")):
        with pytest.raises(HubError) as err:
            local_model(repo_id, hub_source(revision), cached_hub)
        message = str(err.value)
        assert f"model {repo_id!r} at revision {revision} is not in the Hugging Face cache {cache}" in message
        assert "run `snakemake download`" in message and "machine with network" in message
    # a ref whose snapshot folder was removed
    shutil.rmtree(cache / "models--icl-test--tiny" / "snapshots" / MAIN)
    with pytest.raises(HubError, match="'icl-test/tiny' at revision main is not in"):
        local_model("icl-test/tiny", hub_source(None), cached_hub)


OFFLINE_DATA_JOB = """
import sys
from icldistill.hub import use_offline_hub

use_offline_hub({"cache_dir": sys.argv[1]})
from icldistill.data import read_hf

try:
    read_hf("pa", "test", "de", revisions={"google/xtreme": "v3"})
except Exception as err:
    print(f"{type(err).__name__}: {err}")
"""


def test_a_data_set_config_missing_from_the_cache_names_it_and_the_download(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"PYTHONPATH": str(ROOT / "src"), "HF_ENDPOINT": "http://192.0.2.1"}
    home = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_DATA_JOB, str(home)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(
        f"HubError: data set 'google/xtreme' config 'PAWS-X.de' at revision v3 is not in the Hugging Face cache "
        f"{home / 'datasets'}: run `snakemake download`"
    ), result.stdout


# -- the download jobs (against a stub: the Hub is not reachable here) --------------------------------
def test_download_model_fetches_the_pinned_revision_into_the_configured_cache(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        folder = Path(kwargs["cache_dir"]) / "models--org--m" / "snapshots" / V1
        folder.mkdir(parents=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    home, marker = tmp_path / "hf", tmp_path / "downloads" / "m.json"
    folder = download_model("org/m", "v1", home, marker)
    [(repo_id, kwargs)] = calls
    assert repo_id == "org/m" and kwargs["revision"] == "v1" and kwargs["cache_dir"] == home / "hub"
    assert not kwargs.get("local_files_only") and "original/*" in kwargs["ignore_patterns"]
    assert list(kwargs["ignore_patterns"]) == list(SKIPPED_FILES)
    assert folder == str(home / "hub" / "models--org--m" / "snapshots" / V1)
    # what was fetched, not where: the jobs that load it depend on this content
    assert json.loads(marker.read_text()) == {"repo_id": "org/m", "revision": "v1", "commit": V1}


def test_a_gated_model_asks_for_hf_token(tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/api/models/meta-llama/Llama-3.2-3B-Instruct"

    def snapshot_download(repo_id, **kwargs):
        raise GatedRepoError("gated", response=httpx2.Response(401, request=httpx2.Request("GET", url)))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    marker = tmp_path / "m.json"
    with pytest.raises(HubError, match="'meta-llama/Llama-3.2-3B-Instruct' is gated: .* set HF_TOKEN"):
        download_model("meta-llama/Llama-3.2-3B-Instruct", None, tmp_path / "hf", marker)
    assert not marker.exists()


def test_download_data_prepares_the_config_in_the_data_cache(tmp_path, monkeypatch):
    import datasets

    cache = tmp_path / "hf" / "datasets"
    prepared = "google___xtreme/PAWS-X.de/0.0.0/0123abcd"

    class Split:
        def __init__(self, rows, name):
            self.num_rows, self.cache_files = rows, [{"filename": str(cache / prepared / f"xtreme-{name}.arrow")}]

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return {"test": Split(2000, "test"), "validation": Split(2000, "validation")}

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    marker = tmp_path / "downloads" / "PAWS-X.de.json"
    assert download_data("google/xtreme", "PAWS-X.de", "v3", cache, marker) == {"test": 2000, "validation": 2000}
    assert calls == [("google/xtreme", "PAWS-X.de", {"revision": "v3", "cache_dir": str(cache)})]
    assert json.loads(marker.read_text()) == {
        "dataset": "google/xtreme",
        "name": "PAWS-X.de",
        "revision": "v3",
        "rows": {"test": 2000, "validation": 2000},
        "prepared": [prepared],  # relative to the cache: a moved cache downloads the same marker again
    }


def test_hub_data_is_read_at_its_pinned_revision_from_the_data_cache(tmp_path, monkeypatch):
    """What prepare_split passes to ``load_dataset`` is what the download fetched: the data set's
    pinned revision (none for one not pinned) and the data cache; the revision is also the
    job's fingerprint, so pinning another reruns exactly the splits of that data set."""
    import datasets

    from icldistill.data import load_split
    from icldistill.fingerprint import data_fingerprint

    tables = {
        "google/xtreme": [{"sentence1": "A B", "sentence2": "B A", "label": "1"}],
        "nyu-mll/multi_nli": [{"premise": "p", "hypothesis": "h", "label": 2}],
    }
    calls = []

    def load_dataset(path, name=None, split=None, cache_dir=None, revision=None):
        calls.append((path, name, split, cache_dir, revision))
        return datasets.Dataset.from_list(tables[path])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    source = {"source": "hf", "revision": {"google/xtreme": "v3"}, "cache_dir": str(tmp_path)}
    load_split(source, "pa", "dev", "de")
    load_split(source, "nli", "train", "en")
    assert calls == [
        ("google/xtreme", "PAWS-X.de", "validation", str(tmp_path), "v3"),
        ("nyu-mll/multi_nli", None, "train", str(tmp_path), None),
    ]
    assert data_fingerprint(source, "pa", "select", "de") == "v3"
    assert data_fingerprint(source, "nli", "train", "en") is None


def test_data_downloads_are_each_hub_config_the_grid_reads_once():
    data = {"source": "hf", "revision": {"google/xtreme": "v3"}}
    assert data_downloads(data, ["pa", "nli"], ["en", "de", "hi"]) == [
        DataDownload("google/xtreme", "PAWS-X.en", "v3"),
        DataDownload("google/xtreme", "PAWS-X.de", "v3"),  # no PAWS-X in Hindi
        DataDownload("nyu-mll/multi_nli", None, None),  # NLI trains on MultiNLI
        DataDownload("google/xtreme", "XNLI", "v3"),  # every language in one config
    ]
    assert data_downloads({"source": "local", "path": "x"}, ["pa"], ["en"]) == []


def test_download_markers_whose_files_are_not_in_the_cache_are_dropped(tmp_path):
    cache = tmp_path / "hf"
    (cache / "hub" / "models--org--m" / "snapshots" / MAIN).mkdir(parents=True)
    (cache / "datasets" / "google___xtreme" / "XNLI" / "0.0.0" / "h").mkdir(parents=True)
    entries = {
        "kept": ({"repo_id": "org/m", "revision": None, "commit": MAIN}, cache / "hub"),
        "gone": ({"repo_id": "org/x", "revision": None, "commit": MAIN}, cache / "hub"),
        "moved": ({"repo_id": "org/m", "revision": None, "commit": MAIN}, tmp_path / "new" / "hub"),
        "data_kept": ({"dataset": "google/xtreme", "prepared": ["google___xtreme/XNLI/0.0.0/h"]}, cache / "datasets"),
        "data_gone": ({"dataset": "google/xtreme", "prepared": ["google___xtreme/SQuAD/0.0.0/h"]}, cache / "datasets"),
    }
    markers = {}
    for name, (entry, where) in entries.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(entry))
        markers[tmp_path / f"{name}.json"] = where
    said = []
    removed = drop_stale_downloads(markers | {tmp_path / "never-written.json": cache}, say=said.append)
    assert sorted(p.stem for p in removed) == ["data_gone", "gone", "moved"]
    assert (tmp_path / "kept.json").is_file() and (tmp_path / "data_kept.json").is_file()
    assert any("models--org--x" in line and "`snakemake download` fetches it again" in line for line in said), said


# -- (c) the plan: what the download stage fetches, and who waits for it -----------------------------
HUB_GRID = """
models:
  smollm2-135m: null
  hubby: {{path: icl-test/tiny, revision: v1}}
  local: {{path: {local}}}
tasks: [pa, nli]
languages: [en, de]
data: {{source: hf, revision: {{google/xtreme: v3}}}}
hub: {{cache_dir: {cache}}}
conditions: {{fewshot: null, distilled: null, control: null, entropy: null, grad_conflict: null,
             loss_ratio: null, meta: null, task_prior: null}}
"""


def test_the_plan_downloads_each_hub_model_and_data_config_before_the_jobs_that_load_them(tmp_path, tiny_model_dir):
    """Snakemake's own dry-run plan (its API) of a grid with a hub model, a local model and hub
    data: `download` fetches the hub model at its revision and each data config once; every job
    that loads the hub model or reads hub data waits for its marker, the local model's none."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    grid = tmp_path / "hub.yaml"
    grid.write_text(HUB_GRID.format(local=tiny_model_dir, cache=tmp_path / "hf"))
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=tmp_path,
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[ROOT / "config/config.yaml", grid]),
        )
        dag = workflow.dag(DAGSettings(targets={"download", "all"}))
        dag.execute_workflow(executor="dryrun")
        jobs = list(dag.workflow_api._workflow.dag.jobs)
    downloads = {
        (j.rule.name, *sorted(dict(j.wildcards).values())): dict(j.params) for j in jobs if "download_" in j.rule.name
    }
    assert downloads == {
        ("download_model", "hubby"): {"repo_id": "icl-test/tiny", "revision": "v1"},
        ("download_data", "PAWS-X.en", "google/xtreme"): {
            "dataset": "google/xtreme",
            "name": "PAWS-X.en",
            "revision": "v3",
        },
        ("download_data", "PAWS-X.de", "google/xtreme"): {
            "dataset": "google/xtreme",
            "name": "PAWS-X.de",
            "revision": "v3",
        },
        ("download_data", "XNLI", "google/xtreme"): {"dataset": "google/xtreme", "name": "XNLI", "revision": "v3"},
        ("download_data", "default", "nyu-mll/multi_nli"): {
            "dataset": "nyu-mll/multi_nli",
            "name": None,
            "revision": None,
        },
    }
    [target] = [j for j in jobs if j.rule.name == "download"]
    assert len(target.input) == 5
    loaders = [j for j in jobs if j.rule.name in ("build_prompts", "infer", "teacher_cache", "train")]
    assert {j.rule.name for j in loaders} == {"build_prompts", "infer", "train"}
    for job in loaders:
        waits = list(job.input.get("downloaded", []))
        assert waits == (["results/downloads/models/hubby.json"] if job.wildcards.model == "hubby" else []), job
    splits = [j for j in jobs if j.rule.name == "prepare_split"]
    assert splits
    for job in splits:
        w = job.wildcards
        marker = {("pa", "train"): "google/xtreme/PAWS-X.en", ("nli", "train"): "nyu-mll/multi_nli/default"}.get(
            (w.task, w.split)
        ) or {"pa": f"google/xtreme/PAWS-X.{w.lang}", "nli": "google/xtreme/XNLI"}[w.task]
        assert list(job.input.downloaded) == [f"results/downloads/data/{marker}.json"], job


# -- a real run ---------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_a_run_downloads_first_and_its_jobs_load_the_hub_model_offline(tmp_path, tiny_model_dir):
    """The jobs of a hub model, run by Snakemake: the download job runs first (the Hub is
    unreachable, a refused port: it keeps the cached snapshot, as huggingface_hub does) and
    records the commit of the pinned revision; the prompt job waits for it, logs that it reads
    the configured cache offline, and tokenizes with that revision's snapshot."""
    import yaml

    from .conftest import small_grid_config

    home = tmp_path / "hf"
    hub_cache(home, "icl-test/tiny", tiny_model_dir)
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = small_grid_config(
        tiny_model_dir,
        3,
        {"pa": 4},
        models={"hubby": {"path": "icl-test/tiny", "revision": "v1", "dtype": "float32"}},
        tasks=["pa"],
        hub={"cache_dir": str(home)},
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"PYTHONPATH": str(ROOT / "src"), "HF_ENDPOINT": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"}
    snakemake = str(Path(sys.executable).with_name("snakemake"))

    def run(*args):
        result = subprocess.run(
            [snakemake, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", "config.yaml"]
            + ["-j1", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    run("results/prompts/test/hubby/pa/0shot")
    marker_path = workdir / "results/downloads/models/hubby.json"
    marker = json.loads(marker_path.read_text())
    assert marker == {"repo_id": "icl-test/tiny", "revision": "v1", "commit": V1}
    log = (workdir / "results/logs/build_prompts/hubby.pa.0shot.test.log").read_text()
    assert f"Hugging Face Hub offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1); cache {home}" in log, log
    # v1's config (main's model reads 4096 tokens)
    prompts = json.loads((workdir / "results/prompts/test/hubby/pa/0shot/de.json").read_text())
    assert prompts["meta"]["context_length"] == 1024
    # the GPU stages: the Distilled condition's teacher cache, training and inference of the
    # trained model, and Few-Shot inference, each loading the hub model from the cache offline
    run("results/predictions/test/hubby/pa/distilled", "results/predictions/test/hubby/pa/fewshot")
    for job in (
        "teacher_cache/hubby.pa.2shot",
        "train/hubby.pa.distilled",
        "infer/hubby.pa.distilled.test",
        "infer/hubby.pa.fewshot.test",
    ):
        log = (workdir / f"results/logs/{job}.log").read_text()
        assert f"Hugging Face Hub offline (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1); cache {home}" in log, (job, log)
    target = "results/prompts/test/hubby/pa/0shot"
    # a newer marker with the same content: nothing that loads the model reruns
    os.utime(marker_path, (marker_path.stat().st_mtime + 3600,) * 2)
    assert "Nothing to be done" in run("-n", target)
    # the snapshot gone from the cache: the plan drops the marker, the download stage fetches it again
    repo = home / "hub" / "models--icl-test--tiny"
    shutil.move(repo / "snapshots" / V1, tmp_path / "aside")
    plan = run("-n", "download")
    assert "is gone; removed, so `snakemake download` fetches it again" in plan and not marker_path.exists()
    assert "rule download_model:" in plan
    shutil.move(tmp_path / "aside", repo / "snapshots" / V1)  # what the download fetches again
    run("download")
    assert json.loads(marker_path.read_text()) == marker
    assert "Nothing to be done" in run("-n", target)
    # the revision (a tag here, a branch alike) resolves to another commit when fetched again: the
    # jobs that load the model rerun
    (repo / "refs" / "v1").write_text(MAIN)
    marker_path.unlink()
    run("download")
    assert json.loads(marker_path.read_text())["commit"] == MAIN
    plan = run("-n", target)
    assert "Updated input files: results/downloads/models/hubby.json" in plan, plan
