"""Reading model files: hashes, tensor shapes, and weights, never running code from a pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tests.tiny_model import write_code_running_checkpoint, write_lora

from nodeloom.backend.model_manager.errors import ModelFileError, UnsafeModelFileError
from nodeloom.backend.model_manager.model_files import hash_model, load_state_dict, read_tensor_shapes, size_on_disk


def test_a_folder_hash_covers_its_files_contents_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "weights").write_bytes(b"1234")
    (folder / "config.json").write_text("{}")
    first = hash_model(folder)
    assert first.startswith("blake2b:") and len(first) == len("blake2b:") + 64
    assert hash_model(folder) == first
    assert size_on_disk(folder) == 6
    (folder / "unet" / "weights").rename(folder / "weights")
    assert hash_model(folder) != first
    (folder / "weights").write_bytes(b"1235")
    assert hash_model(folder) != first


def test_a_file_hash_is_of_its_contents_alone(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"same")
    (tmp_path / "b.ckpt").write_bytes(b"same")
    assert hash_model(tmp_path / "a.safetensors") == hash_model(tmp_path / "b.ckpt")


def test_safetensors_shapes_come_from_the_header(tmp_path: Path) -> None:
    lora = write_lora(tmp_path / "lora.safetensors", text_width=768, rank=4)
    shapes = read_tensor_shapes(lora)
    assert shapes["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"] == (4, 768)
    assert set(load_state_dict(lora)) == set(shapes)


def test_a_checkpoint_state_dict_is_unwrapped_and_nested_dicts_are_flattened(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"a.weight": torch.zeros(2, 3), "step": 5}, "global_step": 5}, path)
    assert read_tensor_shapes(path) == {"a.weight": (2, 3)}
    embedding = tmp_path / "embedding.pt"
    torch.save({"string_to_param": {"*": torch.zeros(2, 768)}, "name": "style"}, embedding)
    assert read_tensor_shapes(embedding) == {"string_to_param.*": (2, 768)}


def test_a_pickle_that_would_run_code_is_refused_and_runs_none(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    checkpoint = write_code_running_checkpoint(tmp_path / "evil.ckpt", marker)
    for read in (load_state_dict, read_tensor_shapes):
        with pytest.raises(UnsafeModelFileError) as raised:
            read(checkpoint)
        assert "holds the Python object 'exec'" in str(raised.value)
        assert "convert it to .safetensors" in str(raised.value)
    assert not marker.exists()
    # The file is what the test says it is: an unsafe load does run its code.
    torch.load(checkpoint, weights_only=False)
    assert marker.read_text() == "the pickle ran code"


def test_a_plain_pickle_that_would_run_code_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"
    # Protocol 2, the one torch's reader expects of a pickle that is not in its zip format.
    path.write_bytes(pickle.dumps({"x": _Exec(payload)}, protocol=2))
    with pytest.raises(UnsafeModelFileError, match="'exec'"):
        load_state_dict(path)
    assert not marker.exists()


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.code,))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.safetensors", b"hello", "not a safetensors file: it is only 5 bytes long"),
        ("notes.safetensors", b"\x05\x00\x00\x00\x00\x00\x00\x00hello", "its header is not JSON"),
        ("garbage.ckpt", b"hello world\n", "is not a torch weights file"),
        ("empty.pt", b"", "is not a torch weights file"),
    ],
)
def test_files_that_are_not_weights_are_refused_clearly(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_tensor_shapes(path)
