from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodeloom.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "graphs"


def nodeloom(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodeloom", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, graph: dict[str, Any]) -> Path:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    return path


def test_iterate_collect_example_json() -> None:
    result = nodeloom("run", EXAMPLES / "iterate_collect.json", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["errors"] == {}
    assert data["outputs"]["collect"] == [{"type": "collect_output", "collection": [1, 4, 9, 16, 25]}]
    assert [o["value"] for o in data["outputs"]["square"]] == [1, 4, 9, 16, 25]
    assert data["outputs"]["range"] == [{"type": "integer_collection_output", "collection": [1, 2, 3, 4, 5]}]


def test_math_chain_example_readable() -> None:
    result = nodeloom("run", EXAMPLES / "math_chain.json")
    assert result.returncode == 0, result.stderr
    assert "area: value=393216" in result.stdout
    assert "rounded: value=0.667" in result.stdout


def test_prompts_example() -> None:
    result = nodeloom("run", EXAMPLES / "prompts.json", "--json")
    assert result.returncode == 0, result.stderr
    collected = json.loads(result.stdout)["outputs"]["collect"][0]["collection"]
    assert collected == [
        "a red fox, watercolour, soft light",
        "a lighthouse, watercolour, soft light",
        "an old tram, watercolour, soft light",
    ]


def test_set_overrides_fields() -> None:
    result = nodeloom(
        "run", EXAMPLES / "iterate_collect.json", "--set", "range.stop=3", "--set", "square.b=3", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["collect"][0]["collection"] == [1, 8]


def test_set_on_an_unknown_node_exits_2() -> None:
    result = nodeloom("run", EXAMPLES / "iterate_collect.json", "--set", "ghost.value=1")
    assert result.returncode == 2
    assert "no node 'ghost'" in result.stderr


def test_invalid_graph_exits_2_naming_node_and_field(tmp_path: Path) -> None:
    graph = {
        "nodes": {"s": {"id": "s", "type": "string", "value": "x"}, "a": {"id": "a", "type": "add"}},
        "edges": [{"source": {"node_id": "s", "field": "value"}, "destination": {"node_id": "a", "field": "a"}}],
    }
    result = nodeloom("run", write(tmp_path, graph))
    assert result.returncode == 2
    assert "input 'a' of node 'a'" in result.stderr
    assert result.stdout == ""


def test_unknown_node_type_exits_2(tmp_path: Path) -> None:
    result = nodeloom("run", write(tmp_path, {"nodes": {"x": {"id": "x", "type": "warp_drive"}}, "edges": []}))
    assert result.returncode == 2
    assert "Unknown node type 'warp_drive'" in result.stderr


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_unreadable_graph_file_exits_2(tmp_path: Path, content: str) -> None:
    path = tmp_path / "graph.json"
    path.write_text(content)
    assert nodeloom("run", path).returncode == 2


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = nodeloom("run", tmp_path / "nope.json")
    assert result.returncode == 2
    assert "Cannot read" in result.stderr


def test_node_error_exits_1_after_printing_what_ran(tmp_path: Path) -> None:
    graph = {
        "nodes": {
            "a": {"id": "a", "type": "integer", "value": 7},
            "zero": {"id": "zero", "type": "integer", "value": 0},
            "d": {"id": "d", "type": "div"},
        },
        "edges": [
            {"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "d", "field": "a"}},
            {"source": {"node_id": "zero", "field": "value"}, "destination": {"node_id": "d", "field": "b"}},
        ],
    }
    result = nodeloom("run", write(tmp_path, graph), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["outputs"]["a"] == [{"type": "integer_output", "value": 7}]
    assert "d" not in data["outputs"]
    assert set(data["errors"]) == {"d"}


def test_running_core_nodes_imports_no_torch() -> None:
    code = (
        "import sys; from nodeloom.cli.main import main; "
        f"rc = main(['run', {str(EXAMPLES / 'iterate_collect.json')!r}, '--json']); "
        "assert rc == 0; heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_an_input_that_does_not_fit_is_its_node_s_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = {
        "nodes": {"x": {"id": "x", "type": "test_any", "value": "text"}, "a": {"id": "a", "type": "add"}},
        "edges": [{"source": {"node_id": "x", "field": "value"}, "destination": {"node_id": "a", "field": "a"}}],
    }
    assert main(["run", str(write(tmp_path, graph)), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"] == {"x": [{"type": "test_any_output", "value": "text"}]}
    assert set(data["errors"]) == {"a"} and data["errors"]["a"].startswith("NodeInputError: Input 'a' of node 'a'")


def test_ctrl_c_in_a_node_stops_the_command(tmp_path: Path) -> None:
    graph = {"nodes": {"c": {"id": "c", "type": "test_ctrl_c"}}, "edges": []}
    with pytest.raises(KeyboardInterrupt):
        main(["run", str(write(tmp_path, graph))])
