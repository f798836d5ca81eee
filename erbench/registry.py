"""The registry is the recipes: every task and method is declared in a recipe TOML, read without importing torch.

Where recipes come from, in this order:
  - erbench's own, the top-level `tasks/` folder (shipped in the wheel as the package `erbench.recipes`);
  - the folders of `ERBENCH_PATH` (colon-separated; `--include-path DIR` prepends to it, so sweep workers
    inherit it): every `*.toml` there is a recipe, and the folder is importable for the modules it names;
  - installed packages' entry points: group `erbench.tasks` (NAME = "package" reads package/NAME.toml, a task
    recipe) and `erbench.methods` (NAME = "package" reads package/NAME.toml, which declares [method.NAME]);
    "package:file.toml" names another file of the package.

A recipe declares a task with a `[task]` table (the task is named after the file) and methods with
`[method.NAME]` tables (see tasks/methods.toml). A module name starting with "." is relative to the
recipe's package (entry points) or folder (include paths). A name declared twice is an error naming both files.
"""

import functools
import importlib
import os
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from erbench.errors import ErbenchError

TASK_KEYS = {"target", "description", "capabilities", "default_scale", "drift_metrics", "evaluation_fields"}
METHOD_KEYS = {"hook", "config", "description", "requires", "preset"}
RECIPE_TABLES = {"task", "method", "scales", "methods", "grids"}
SCALE_TABLES = {"description", "task", "train", "method", "methods"}
SETTING_SECTIONS = ("task", "train", "method")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    target: str  # "module:attr" of the task class
    description: str
    source: str  # the recipe file, for messages
    package: str | None  # the package relative module names resolve against ("" for an include folder)
    recipe: dict = field(repr=False)  # scales, methods, grids
    # Drift metrics of the run records, each "lower" or "higher" is better; the first is the default x axis.
    # Every task's evaluation also reports "reward", its task-performance side.
    drift_metrics: dict[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()  # what methods may require of it (e.g. "causal-lm")
    evaluation_fields: tuple[str, ...] = ()  # task config fields that are not a method's setting (how much it evaluates)
    default_scale: str = "tiny"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    hook: str  # "module:attr" of the trainer hook (erbench.methods.base.Method)
    config: str  # "module:attr" of its config dataclass
    description: str
    source: str
    package: str | None
    requires: tuple[str, ...] = ()  # task capabilities it needs
    preset: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"section": {"field": value}} over the scale


@dataclass(frozen=True)
class Registry:
    tasks: dict[str, TaskSpec]
    methods: dict[str, MethodSpec]

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise ErbenchError(f"unknown task '{name}'", f"choose one of: {', '.join(self.tasks)} (see `erbench list`; "
                               "a plugin's task needs --include-path DIR or its package installed)")
        return self.tasks[name]

    def methods_for(self, task: str) -> list[str]:
        capabilities = set(self.task(task).capabilities)
        return [name for name, spec in self.methods.items() if set(spec.requires) <= capabilities]

    def method(self, name: str, task: str | None = None) -> MethodSpec:
        if name not in self.methods:
            raise ErbenchError(f"unknown method '{name}'", f"choose one of: {', '.join(self.methods)} (see `erbench list`)")
        if task is not None and name not in self.methods_for(task):
            missing = sorted(set(self.methods[name].requires) - set(self.task(task).capabilities))
            raise ErbenchError(f"method '{name}' does not apply to task {task} (it needs a task with {', '.join(missing)})",
                               f"choose one of: {', '.join(self.methods_for(task))}")
        return self.methods[name]


def builtin_recipes():
    """erbench's own recipe folder: the wheel's erbench.recipes, or tasks/ of a source checkout (editable install)."""
    try:
        return resources.files("erbench.recipes")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "tasks"


def include_paths() -> list[Path]:
    return [Path(p) for p in os.environ.get("ERBENCH_PATH", "").split(os.pathsep) if p]


def add_include_paths(paths: list[Path]) -> None:
    """--include-path: prepend to ERBENCH_PATH (sweep subprocesses and Ray workers inherit the environment)."""
    for path in reversed(paths):
        if not path.is_dir():
            raise ErbenchError(f"--include-path {path} is not a folder", "give a folder holding recipe .toml files")
    if paths:
        os.environ["ERBENCH_PATH"] = os.pathsep.join([*(str(p.resolve()) for p in paths), *map(str, include_paths())])


def read_recipe(file, source: str) -> dict:
    try:
        return tomllib.loads(file.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ErbenchError(f"cannot read recipe {source}: {e}", "fix the file's TOML syntax") from None


def check_keys(found, allowed: set[str], where: str, source: str) -> None:
    unknown = sorted(set(found) - allowed)
    if unknown:
        raise ErbenchError(f"unknown key '{unknown[0]}' in {where} of {source}", f"valid keys there: {', '.join(sorted(allowed))}")


def validate_recipe(recipe: dict, source: str) -> None:
    """The recipe's shape: known tables in known places. Field names are checked when a run resolves them."""
    check_keys(recipe, RECIPE_TABLES, "the top level", source)
    for section in ("scales", "methods", "grids"):
        if section in recipe and "task" not in recipe:
            raise ErbenchError(f"{source} has [{section}] but declares no [task]", "add a [task] table with its target")
    for scale, body in recipe.get("scales", {}).items():
        check_keys(body, SCALE_TABLES, f"[scales.{scale}]", source)
        for method, tables in body.get("methods", {}).items():
            check_keys(tables, set(SETTING_SECTIONS), f"[scales.{scale}.methods.{method}]", source)
    for method, tables in recipe.get("methods", {}).items():
        check_keys(tables, set(SETTING_SECTIONS), f"[methods.{method}]", source)


def declarations(recipe: dict, name: str, source: str, package: str | None, tasks: dict, methods: dict, origins: dict) -> None:
    def claim(kind: str, key: str) -> None:
        if (kind, key) in origins:
            raise ErbenchError(f"{kind} '{key}' is defined twice: in {origins[kind, key]} and in {source}",
                               "rename one of them, or drop one of the two sources (--include-path, ERBENCH_PATH, entry points)")
        origins[kind, key] = source

    validate_recipe(recipe, source)
    if "task" in recipe:
        body = recipe["task"]
        check_keys(body, TASK_KEYS, "[task]", source)
        if "target" not in body:
            raise ErbenchError(f"[task] of {source} has no target", 'add target = "module:TaskClass"')
        claim("task", name)
        tasks[name] = TaskSpec(name, body["target"], body.get("description", ""), source, package,
                               {k: recipe.get(k, {}) for k in ("scales", "methods", "grids")},
                               dict(body.get("drift_metrics", {})), tuple(body.get("capabilities", ())),
                               tuple(body.get("evaluation_fields", ())), body.get("default_scale", "tiny"))
    for method, body in recipe.get("method", {}).items():
        check_keys(body, METHOD_KEYS, f"[method.{method}]", source)
        for key in ("hook", "config"):
            if key not in body:
                raise ErbenchError(f"[method.{method}] of {source} has no {key}", f'add {key} = "module:attr"')
        check_keys(body.get("preset", {}), set(SETTING_SECTIONS), f"[method.{method}.preset]", source)
        claim("method", method)
        methods[method] = MethodSpec(method, body["hook"], body["config"], body.get("description", ""), source, package,
                                     tuple(body.get("requires", ())), body.get("preset", {}))


@functools.cache
def load_registry(path_value: str) -> Registry:
    tasks, methods, origins, seen = {}, {}, {}, set()

    def add(file, source: str, stem: str, package: str | None) -> None:
        if source in seen:  # the same file reached twice (an editable plugin also on the include path)
            return
        seen.add(source)
        declarations(read_recipe(file, source), stem, source, package, tasks, methods, origins)

    builtin = builtin_recipes()
    for file in sorted(builtin.iterdir(), key=lambda f: f.name):
        if file.name.endswith(".toml"):
            add(file, str(file), file.name.removesuffix(".toml"), None)
    for folder in [Path(p) for p in path_value.split(os.pathsep) if p]:
        if not folder.is_dir():
            raise ErbenchError(f"ERBENCH_PATH names {folder}, which is not a folder", "fix ERBENCH_PATH or --include-path")
        for file in sorted(folder.glob("*.toml")):
            add(file, str(file.resolve()), file.stem, "")
    for group, kind in (("erbench.tasks", "task"), ("erbench.methods", "method")):
        for entry in metadata.entry_points(group=group):
            package, _, resource = entry.value.partition(":")
            try:
                file = resources.files(package.strip()) / (resource.strip() or f"{entry.name}.toml")
            except ModuleNotFoundError:
                raise ErbenchError(f"entry point {entry.name} ({group}) names package {package}, which is not installed",
                                   "reinstall the plugin, or uninstall it") from None
            source = str(file.resolve()) if isinstance(file, Path) else str(file)  # an editable plugin: its source file
            add(file, source, entry.name, package.strip())
            if (kind == "task" and entry.name not in tasks) or (kind == "method" and entry.name not in methods):
                raise ErbenchError(f"entry point {entry.name} ({group}) reads {source}, which declares no {kind} {entry.name}",
                                   f"declare [{kind}] in it" if kind == "task" else f"declare [method.{entry.name}] in it")
    for task in tasks.values():  # per-task method tables must name declared methods ([methods.elastik] is a typo)
        scales = task.recipe["scales"].items()
        for where, name in [(f"[methods.{m}]", m) for m in task.recipe["methods"]] + [
                (f"[scales.{s}.methods.{m}]", m) for s, body in scales for m in body.get("methods", {})]:
            if name not in methods:
                raise ErbenchError(f"{where} in {task.source} names unknown method '{name}'",
                                   f"use one of: {', '.join(methods)}")
    return Registry(tasks, methods)


def registry() -> Registry:
    return load_registry(os.environ.get("ERBENCH_PATH", ""))


def load(target: str, package: str | None, source: str, what: str):
    """The object a recipe names ("module:attr"; ".module" is relative to the recipe's package or folder)."""
    module, _, attr = target.partition(":")
    if module.startswith("."):
        module = f"{package}{module}" if package else module[1:]
    for folder in include_paths():  # include folders hold the modules their recipes name
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ErbenchError(f"cannot load {what} '{target}' named in {source}: {e}",
                           "fix the module:attr, or make the module importable (--include-path its folder)") from None


def load_task_class(name: str):
    spec = registry().task(name)
    return load(spec.target, spec.package, spec.source, f"task {name}'s target")


def load_method_hook(name: str):
    spec = registry().method(name)
    return load(spec.hook, spec.package, spec.source, f"method {name}'s hook")


def load_method_config(name: str):
    spec = registry().method(name)
    return load(spec.config, spec.package, spec.source, f"method {name}'s config")
