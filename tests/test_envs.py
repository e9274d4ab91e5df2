"""The conda envs (envs/*.yaml) and where jobs import the package from.

Each env lists dependencies only, with pyproject.toml's specifiers, and covers the third-party
imports that the scripts of its rules reach; every job imports the checkout's own src/.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from .conftest import ROOT, small_grid_config

ENVS = ROOT / "envs"
RULES = ROOT / "workflow" / "rules"
SCRIPTS = ROOT / "workflow" / "scripts"
SRC = ROOT / "src"
PACKAGE = "icldistill"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

#: import names whose distribution is called otherwise
DISTRIBUTIONS = {"yaml": "pyyaml", "sklearn": "scikit-learn"}
#: imports only the vLLM backend makes (icldistill.backends.vllm): needed in its env alone
BACKEND_ONLY = {"vllm": "vllm.yaml"}
#: what conda itself brings, not a dependency of the package
TOOLING = {"python", "pip"}


# -- the envs and pyproject.toml -------------------------------------------------------------------
def env_entries(env: Path) -> list[tuple[str, str]]:
    """``(installer, entry)`` of every dependency of ``env``: ``conda`` or ``pip``."""
    entries = []
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        if isinstance(dep, dict):
            entries += [("pip", str(entry)) for entry in dep["pip"]]
        else:
            entries.append(("conda", str(dep)))
    return entries


def requirement(installer: str, entry: str) -> Requirement:
    """``entry`` as a PEP 508 requirement (a conda ``=`` pin read as pip's ``==``)."""
    if installer == "conda":
        entry = re.sub(r"(?<![=<>!~])=(?!=)", "==", entry)
    return Requirement(entry)


def env_requirements(env: Path) -> dict[str, Requirement]:
    """The env's dependencies other than python and pip, by canonical name."""
    requirements = (requirement(installer, entry) for installer, entry in env_entries(env))
    return {canonicalize_name(r.name): r for r in requirements if r.name not in TOOLING}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared_requirements() -> dict[str, Requirement]:
    """pyproject.toml's dependencies and every extra's, by canonical name."""
    project = pyproject()
    entries = project["dependencies"] + [e for extra in project["optional-dependencies"].values() for e in extra]
    return {canonicalize_name(Requirement(e).name): Requirement(e) for e in entries}


def all_envs() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def test_no_env_installs_a_path_or_the_package():
    for env in all_envs():
        for installer, entry in env_entries(env):
            assert not entry.startswith(("-e", "--editable", ".", "/", "file:")), f"{env.name}: {entry!r}"
            assert "/" not in entry and "@" not in entry, f"{env.name}: {entry!r} is a path or URL"
            try:
                name = requirement(installer, entry).name
            except InvalidRequirement:
                pytest.fail(f"{env.name}: {entry!r} is not a requirement")
            assert canonicalize_name(name) != PACKAGE, f"{env.name} installs the package; src/ is on PYTHONPATH"


def test_env_dependencies_are_pyprojects_with_its_specifiers():
    declared = declared_requirements()
    for env in all_envs():
        for name, listed in env_requirements(env).items():
            assert name in declared, f"{env.name}: {name} is not in pyproject.toml's dependencies or extras"
            assert listed.specifier == declared[name].specifier, (
                f"{env.name}: {listed} but pyproject.toml has {declared[name]}"
            )
            assert listed.extras <= declared[name].extras, f"{env.name}: {listed} vs {declared[name]}"
        python = next(entry for installer, entry in env_entries(env) if entry.startswith("python"))
        assert SpecifierSet(pyproject()["requires-python"]).contains(python.split("=")[-1]), f"{env.name}: {python}"


# -- which rule runs which script in which env -----------------------------------------------------
RULE = re.compile(r"^(?:rule (\w+)|use rule (\w+) as (\w+) with):\n((?:[ \t]+.*\n|[ \t]*\n)*)", re.M)


def _directive(block: str, name: str) -> str | None:
    found = re.search(rf"^ {{4}}{name}:(?:[ \t]*\n[ \t]+|[ \t]+)(\S.*)$", block, re.M)
    return found.group(1).strip() if found else None


def _env_names(expression: str, rule_files: str) -> set[str]:
    """Env file names a ``conda:`` directive may give: its literal, or every env named in the
    function it calls (``stage_env(backend)``)."""
    if expression[0] in "\"'":
        return {Path(ast.literal_eval(expression)).name}
    function = re.match(r"(\w+)\(", expression).group(1)
    body = re.search(rf"^def {function}\(.*?(?=^\S)", rule_files, re.M | re.S).group(0)
    return set(re.findall(r"envs/(\w+\.yaml)", body))


def rule_envs() -> dict[str, tuple[Path, set[str]]]:
    """``rule → (script, env file names)`` from workflow/rules/*.smk; ``use rule`` inherits."""
    rule_files = "".join(path.read_text() for path in sorted(RULES.glob("*.smk")))
    directives, parents = {}, {}
    for plain, parent, child, block in RULE.findall(rule_files):
        name = plain or child
        directives[name] = {key: _directive(block, key) for key in ("conda", "script")}
        if parent:
            parents[name] = parent
    rules = {}
    for name in directives:
        found, rule = {}, name
        while rule:
            found = {k: v for k, v in directives[rule].items() if v} | found
            rule = parents.get(rule)
        if found.get("script"):
            assert found.get("conda"), f"rule {name} runs a script but has no conda env"
            script = (RULES / ast.literal_eval(found["script"])).resolve()
            rules[name] = (script, _env_names(found["conda"], rule_files))
    return rules


def test_every_rule_script_has_an_env_and_every_env_a_rule():
    rules = rule_envs()
    assert {script.name for script, _ in rules.values()} == {p.name for p in SCRIPTS.glob("*.py")}
    assert rules["infer"][1] == {"inference.yaml", "vllm.yaml"}
    used = set().union(*(envs for _, envs in rules.values()))
    assert used == {env.name for env in all_envs()}


# -- what a script imports -------------------------------------------------------------------------
# A unit is a module's top-level code (name None) or one top-level function or class of it. A
# script reaches the units it names, and each unit those name, down the package: the third-party
# imports of every unit reached, lazy ones in a function included, are what its env must hold.
# Naming a class reaches all its methods; a name is followed even where a local shadows it.
Unit = tuple[str, str | None]


class Module:
    """One module of the package (or the script): its defs, top-level code and import bindings."""

    def __init__(self, name: str, tree: ast.Module | None, is_package: bool):
        self.name, self.is_package = name, is_package
        body = tree.body if tree else []
        self.defs = {n.name: n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        # top-level code: what runs on import (decorators, defaults and bases, not def bodies)
        self.top = []
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.top += node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]
            elif isinstance(node, ast.ClassDef):
                self.top += node.decorator_list + node.bases + node.keywords
            else:
                self.top.append(node)
        self.names = self.bindings(self.top)

    def bindings(self, nodes) -> dict[str, tuple]:
        """What the import statements in ``nodes`` bind: ``("ext", top-level name)`` for
        third-party and standard modules, ``("pkg", module, name)`` for the package's."""
        bound = {}
        for node in (n for root in nodes for n in ast.walk(root)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    bound[alias.asname or top] = ("pkg", alias.name, None) if top == PACKAGE else ("ext", top)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = self.name.split(".")[: len(self.name.split(".")) - node.level + self.is_package]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    if base.split(".")[0] == PACKAGE:
                        bound[alias.asname or alias.name] = ("pkg", base, alias.name)
                    else:
                        bound[alias.asname or alias.name] = ("ext", base.split(".")[0])
        return bound


class Package:
    """The package's modules under src/, parsed when first reached."""

    def __init__(self):
        self.modules: dict[str, Module] = {}

    def module(self, name: str) -> Module | None:
        if name not in self.modules:
            path = SRC.joinpath(*name.split("."))
            if (path / "__init__.py").is_file():
                self.modules[name] = Module(name, ast.parse((path / "__init__.py").read_text()), True)
            elif path.with_suffix(".py").is_file():
                self.modules[name] = Module(name, ast.parse(path.with_suffix(".py").read_text()), False)
            elif path.is_dir():  # a namespace package
                self.modules[name] = Module(name, None, True)
            else:
                return None
        return self.modules[name]

    def resolve(self, module: str, name: str | None) -> Unit:
        """The unit ``module.name`` is: a submodule, a def, a re-exported name, or top-level code."""
        if name is None or self.module(f"{module}.{name}"):
            return (module if name is None else f"{module}.{name}", None)
        mod = self.module(module)
        if name in mod.defs:
            return (module, name)
        if name in mod.names and mod.names[name][0] == "pkg":
            return self.resolve(*mod.names[name][1:])
        return (module, None)

    def reaches(self, unit: Unit) -> tuple[set[str], set[Unit]]:
        """The third-party imports of ``unit`` and the units it names."""
        module, name = unit
        mod = self.module(module)
        nodes = mod.top if name is None else [mod.defs[name]]
        local = mod.names if name is None else mod.bindings(nodes)
        scope = mod.names | local
        imports = {b[1] for b in local.values() if b[0] == "ext"} - set(sys.stdlib_module_names)
        parts = module.split(".")
        units = {(".".join(parts[:i]), None) for i in range(1, len(parts) + 1) if parts[0] == PACKAGE}
        # an import runs the imported module's top-level code; a name reaches its unit when used
        units |= {self.resolve(b[1], None) for b in local.values() if b[0] == "pkg"}
        units |= {u for b in local.values() if b[0] == "pkg" and (u := self.resolve(*b[1:]))[1] is None}
        for node in (n for root in nodes for n in ast.walk(root)):
            if isinstance(node, ast.Name):
                if node.id in mod.defs:
                    units.add((module, node.id))
                if scope.get(node.id, ("",))[0] == "pkg":
                    units.add(self.resolve(*scope[node.id][1:]))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                bound = scope.get(node.value.id, ("",))
                if bound[0] == "pkg" and (bound[2] is None or self.module(f"{bound[1]}.{bound[2]}")):
                    # an attribute of one of the package's modules (`vocab.LANGUAGES`)
                    units.add(self.resolve(self.resolve(*bound[1:])[0], node.attr))
        return imports, units


def script_imports(script: Path) -> set[str]:
    """Top-level names of the third-party modules ``script`` reaches through the package."""
    package = Package()
    package.modules["__script__"] = Module("__script__", ast.parse(script.read_text()), False)
    seen, todo, imports = set(), [("__script__", None)], set()
    while todo:
        unit = todo.pop()
        if unit in seen or package.module(unit[0]) is None:
            continue
        seen.add(unit)
        found, units = package.reaches(unit)
        imports |= found
        todo += units
    return imports


def distribution(import_name: str) -> str:
    return canonicalize_name(DISTRIBUTIONS.get(import_name, import_name))


def test_the_import_walk_finds_lazy_imports_and_skips_unreached_ones():
    # the hub reader's lazy `import datasets`; torch only behind functions prepare_split never calls
    assert script_imports(SCRIPTS / "prepare_split.py") == {"datasets"}
    assert {"torch", "transformers", "peft", "vllm"} <= script_imports(SCRIPTS / "infer.py")
    assert "torch" not in script_imports(SCRIPTS / "render_results.py")


def test_each_env_covers_the_imports_of_its_rules_scripts():
    requirements = {env.name: env_requirements(env) for env in all_envs()}
    for rule, (script, envs) in sorted(rule_envs().items()):
        for name in sorted(script_imports(script)):
            home = BACKEND_ONLY.get(name)
            wanted = [env for env in sorted(envs) if home in (None, env)]
            assert wanted, f"rule {rule} ({script.name}) imports {name}, only made in {home}, not one of its envs"
            for env in wanted:
                assert distribution(name) in requirements[env], (
                    f"rule {rule} runs {script.name} in envs/{env}, which does not list {distribution(name)} "
                    f"(it imports {name}); add it to the env (and pyproject.toml), or its name to DISTRIBUTIONS"
                )


# -- jobs import the checkout's src/ -----------------------------------------------------------------
def test_conda_runs_without_the_search_path_flag_stop_with_the_reason():
    """Snakemake unsets PYTHONPATH in conda envs unless --conda-not-block-search-path-envvars:
    the workflow profile sets it, and a run without it (--workflow-profile none) is refused."""
    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert profile["conda-not-block-search-path-envvars"] is True
    command = [SNAKEMAKE, "--list-rules", "--sdm", "conda"]
    refused = subprocess.run([*command, "--workflow-profile", "none"], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "--conda-not-block-search-path-envvars" in refused.stderr, refused.stderr
    listed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0 and "prepare_split" in listed.stdout, listed.stderr[-2000:]


MARK = """
import json as _json, os as _os, sys as _sys
with open({log!r}, "a") as _log:
    _log.write(_json.dumps({{"argv": _sys.argv[0], "file": __file__, "path": _os.environ.get("PYTHONPATH")}}) + "\\n")
"""


@pytest.mark.e2e
def test_a_job_imports_its_checkouts_package_first_on_pythonpath(tmp_path):
    """A copy of the checkout whose package logs each import: prepare_split's job imports the
    copy's package, ahead of an icldistill on the caller's PYTHONPATH (kept behind it) and of
    the one installed in this environment."""
    copy, workdir, decoy, model = (tmp_path / name for name in ("checkout", "work", "decoy", "model"))
    for folder in ("src", "workflow", "envs", "config", "report", "profiles"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "Snakefile", copy)
    imports = tmp_path / "imports.jsonl"
    with open(copy / "src" / PACKAGE / "__init__.py", "a") as init:
        init.write(MARK.format(log=str(imports)))
    (decoy / PACKAGE).mkdir(parents=True)
    (decoy / PACKAGE / "__init__.py").write_text("raise ImportError('the icldistill on the caller PYTHONPATH')\n")
    model.mkdir()
    (model / "config.json").write_text("{}")
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_grid_config(model, max_examples=2, max_new_tokens={})))

    result = subprocess.run(
        [SNAKEMAKE, "results/data/nli/test.en.jsonl", "-s", str(copy / "Snakefile"), "--directory", str(workdir)]
        + ["-j", "1", "--configfile", str(workdir / "config.yaml")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(decoy)),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [json.loads(line) for line in imports.read_text().splitlines()]
    job = next((j for j in jobs if j["argv"].endswith("prepare_split.py")), None)
    assert job is not None, f"the job did not import the copy's package: {jobs}"
    assert Path(job["file"]).is_relative_to(copy / "src")
    assert job["path"].split(os.pathsep) == [str(copy / "src"), str(decoy)]
