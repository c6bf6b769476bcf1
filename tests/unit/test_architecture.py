"""The shape of the code, checked on its syntax tree: no manager reaches back to the plugin,
the foundations and edges import no feature, few modules sit at the root, files stay short."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rtcbot"
MAX_LINES = 500
# The features; everything else is a foundation (the root modules), an edge (matrix/, media/,
# net/, commands/) or the pure core (rtc/), and imports none of them at run time. Only the
# wiring (bot.py) and the settings assembly (settings.py) put features together.
FEATURES = {"calls", "recording", "auth", "e2ee", "schedules", "transcripts", "diagnostics"}
WIRING = {"bot.py", "settings.py", "__init__.py"}
MAX_ROOT_MODULES = 12  # the entry point, the wiring, the settings assembly and ~9 foundations
# Names a manager would use for the plugin object it should not hold.
PLUGIN_NAMES = {"bot", "plugin"}
PLUGIN_TYPES = {"RtcBot", "Plugin"}


def _modules() -> list[Path]:
    """Every module but the plugin itself (bot.py) and the package's entry point, whose one
    job is to hand maubot the main class (`main_class: rtcbot/RtcBot` in maubot.yaml)."""
    entry = {PACKAGE / "bot.py", PACKAGE / "__init__.py"}
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in entry)


def _imports_bot(path: Path, tree: ast.AST) -> list[str]:
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ("rtcbot", …)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "rtcbot.bot"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            names = {a.name for a in node.names}
            if target == "rtcbot.bot" or (target == "rtcbot" and "bot" in names):
                found.append(f"line {node.lineno}: from {'.' * node.level}{node.module}")
    return found


def _annotation_names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {
            n.id for n in ast.walk(ast.parse(node.value, mode="eval")) if isinstance(n, ast.Name)
        }
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _stores_plugin(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                if _annotation_names(arg.annotation) & PLUGIN_TYPES:
                    found.append(f"line {node.lineno}: {node.name}({arg.arg}: plugin)")
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                    and t.attr in PLUGIN_NAMES
                ):
                    found.append(f"line {node.lineno}: self.{t.attr} = …")
    return found


# Documented functions of the standard library whose names begin with an underscore.
STDLIB_UNDERSCORED = {"os._exit"}


def _private_reads(tree: ast.AST) -> list[str]:
    """`x._name` where x is not self/cls: another object's private attribute."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            if ast.unparse(node) in STDLIB_UNDERSCORED:
                continue
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_imports_the_plugin() -> None:
    bad = {}
    for path in _modules():
        hits = _imports_bot(path, ast.parse(path.read_text()))
        if hits:
            bad[str(path.relative_to(PACKAGE))] = hits
    assert not bad, f"modules importing rtcbot.bot: {bad}"


def test_the_import_check_sees_an_import_of_the_plugin() -> None:
    # The check itself must be able to fail (including under TYPE_CHECKING).
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..bot import RtcBot\n"
    assert _imports_bot(PACKAGE / "media" / "x.py", ast.parse(src))
    assert _imports_bot(PACKAGE / "x.py", ast.parse("from .bot import RtcBot\n"))
    assert _imports_bot(PACKAGE / "x.py", ast.parse("from . import bot\n"))
    assert not _imports_bot(PACKAGE / "x.py", ast.parse("from .bot_helpers import x\n"))


def test_no_manager_stores_the_plugin() -> None:
    bad = {}
    for path in [*_modules(), PACKAGE / "bot.py"]:
        hits = _stores_plugin(ast.parse(path.read_text()))
        if hits:
            bad[str(path.relative_to(PACKAGE))] = hits
    assert not bad, f"managers holding the plugin: {bad}"


def test_the_store_check_sees_a_back_reference() -> None:
    src = "class M:\n    def __init__(self, bot: 'RtcBot') -> None:\n        self.bot = bot\n"
    assert len(_stores_plugin(ast.parse(src))) == 2


def test_no_private_attribute_is_read_across_objects() -> None:
    bad = {}
    for path in PACKAGE.rglob("*.py"):
        hits = _private_reads(ast.parse(path.read_text()))
        if hits:
            bad[str(path.relative_to(PACKAGE))] = hits
    assert not bad, f"private attributes of other objects: {bad}"


def test_no_file_is_longer_than_the_limit() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def _runtime_imports(path: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module) of every import that runs (not those under TYPE_CHECKING)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _feature_imports(path: Path, tree: ast.AST) -> list[str]:
    rel = path.relative_to(PACKAGE).parts
    if rel[0] in FEATURES or (len(rel) == 1 and rel[0] in WIRING):
        return []
    return [
        f"line {line}: {target}"
        for line, target in _runtime_imports(path, tree)
        if (parts := target.split("."))[0] == "rtcbot" and len(parts) > 1 and parts[1] in FEATURES
    ]


def test_foundations_and_edges_import_no_feature() -> None:
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        hits = _feature_imports(path, ast.parse(path.read_text()))
        if hits:
            bad[str(path.relative_to(PACKAGE))] = hits
    assert not bad, f"foundations or edges importing a feature: {bad}"


def test_the_feature_import_check_sees_one_and_allows_types_only() -> None:
    imports = "from ..recording.session import RoomMedia\n"
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    " + imports
    edge = PACKAGE / "media" / "x.py"
    assert _feature_imports(edge, ast.parse(imports)) == ["line 1: rtcbot.recording.session"]
    assert _feature_imports(edge, ast.parse(typed)) == []
    assert _feature_imports(PACKAGE / "calls" / "x.py", ast.parse(imports)) == []


def test_few_modules_sit_at_the_package_root() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_diagnostics_and_schedules_are_packages_split_by_idea() -> None:
    for name in ("diagnostics", "schedules"):
        pkg = PACKAGE / name
        assert (pkg / "__init__.py").is_file() and not (PACKAGE / f"{name}.py").exists()
        assert len([p for p in pkg.glob("*.py") if p.name != "__init__.py"]) >= 4


async def test_a_task_is_counted_for_its_own_instance_only() -> None:
    """Two instances of the plugin in one maubot: a helper's loop (its owner has only a child
    logger, no context) belongs to its own instance, not to the other one's stop count."""
    import asyncio
    import logging

    from rtcbot.tasks import owned_by

    ours = logging.getLogger("maubot.instance.rtcbot")
    theirs = logging.getLogger("maubot.instance.rtcbot-sfu2")

    class Loop:
        def __init__(self, log: logging.Logger) -> None:
            self.log = log

        async def run(self) -> None:
            await asyncio.sleep(3600)

    mine = asyncio.create_task(Loop(ours.getChild("media.retention")).run())
    other = asyncio.create_task(Loop(theirs.getChild("media.retention")).run())
    loose = asyncio.create_task(Loop(logging.getLogger("rtcbot.somewhere")).run())
    await asyncio.sleep(0)
    try:
        assert owned_by(mine, ours) and owned_by(loose, ours)
        assert not owned_by(other, ours) and owned_by(other, theirs)
    finally:
        for t in (mine, other, loose):
            t.cancel()
