"""Error codes, issue codes and error categories are enums in errors.py: every place that
writes one uses a member (a loose string literal fails here), and the docs and both clients'
code lists are generated from them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from co_sidecar import errors
from co_sidecar.clientgen import lua_text, typescript_text
from co_sidecar.docgen import errors_text
from co_sidecar.errors import ErrorCategory, IssueCode, RunErrorCode, local_error_code

PACKAGE = Path(errors.__file__).parent
ENUMS = {"RunErrorCode": RunErrorCode, "IssueCode": IssueCode, "ErrorCategory": ErrorCategory}


def _code_arguments(tree: ast.AST) -> list[ast.expr]:
    """Every expression the code passes or assigns as an error code, issue code or category."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            found += [kw.value for kw in node.keywords if kw.arg in ("code", "error_code", "category")]
            if name == "Outcome" and len(node.args) >= 3:
                found.append(node.args[2])
            if name == "EnvironmentProblem" and node.args:
                found.append(node.args[0])
            if name == "SpawnError" and len(node.args) >= 2:
                found.append(node.args[1])
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "category" for t in stmt.targets):
                    found.append(stmt.value)
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr in ("code", "category"):
            found += node.comparators
    return found


def _sources() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "testing" not in p.parts]


def _problems(path: Path) -> list[str]:
    out = []
    for expr in _code_arguments(ast.parse(path.read_text(encoding="utf-8"))):
        for node in ast.walk(expr):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(f"{where}: the code {node.value!r} is a string literal; use its enum member")
            elif isinstance(node, ast.JoinedStr):
                out.append(f"{where}: a code built with an f-string; use an enum member")
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in ENUMS
                and node.attr not in ENUMS[node.value.id].__members__
            ):
                out.append(f"{where}: {node.value.id}.{node.attr} is not a member")
    return out


def test_every_code_the_package_writes_is_an_enum_member() -> None:
    problems = [p for path in _sources() for p in _problems(path)]
    assert problems == []


def test_the_scan_catches_a_loose_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "Outcome(RunState.FAILED, 'x', 'cloud_oops')\n"
        "Issue(code='made_up', message='m')\n"
        "WorkspaceError('m', category=RunErrorCode.NOT_A_CODE)\n"
        "class E(CoError):\n    category = 'loose'\n",
        encoding="utf-8",
    )
    found = _problems(bad)
    assert len(found) == 4, found


def test_wire_values_are_the_documented_strings() -> None:
    assert RunErrorCode.CLOUD_PREFLIGHT == "cloud_preflight"
    assert IssueCode.CLOUD_DISABLED.value == "cloud_disabled"
    assert f"{RunErrorCode.CANCELLED}" == "cancelled"
    for enum in ENUMS.values():
        values = [m.value for m in enum]
        assert len(values) == len(set(values))
        assert all(m.doc and "\n" not in m.doc for m in enum)


@pytest.mark.parametrize("enum", [RunErrorCode, IssueCode, ErrorCategory])
def test_errors_md_lists_every_member_with_its_doc(enum: type[errors._Documented]) -> None:
    text = errors_text()
    for member in enum:
        assert f"| `{member.value}` |" in text and member.doc in text


def test_both_clients_get_the_code_lists() -> None:
    ts, lua = typescript_text(), lua_text()
    for member in [*RunErrorCode, *IssueCode]:
        assert f'"{member.value}"' in ts and f'"{member.value}"' in lua
    assert "export type RunErrorCode" in ts and "M.ISSUE_CODES" in lua


def test_local_errors_before_the_agent_starts_keep_their_codes() -> None:
    assert local_error_code(RunErrorCode.LOCAL_NO_COMMITS) is RunErrorCode.LOCAL_NO_COMMITS
    assert local_error_code(ErrorCategory.WORKSPACE) is RunErrorCode.LOCAL_WORKSPACE


def test_the_runs_views_follow_up_menu_offers_exactly_the_followable_states() -> None:
    """package.json's `when` clauses cannot import the generated lists: they are checked here."""
    import json
    import re

    from co_sidecar.protocol import FOLLOWABLE_STATES

    manifest = json.loads((PACKAGE.parents[1] / "editor-clients" / "vscode" / "package.json").read_text())
    menu = manifest["contributes"]["menus"]["view/item/context"]
    when = next(m["when"] for m in menu if m["command"] == "co-sidecar.followUp")
    offered = re.search(r"\^coRun:\(([a-z_|]+)\)\$", when)
    assert offered, when
    assert set(offered[1].split("|")) == {s.value for s in FOLLOWABLE_STATES}
