"""Which files of a Hugging Face repo make the model a source asks for, listed with `huggingface_hub`."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from nodeloom.app.services.model_install.model_install_common import (
    HFModelSource,
    ModelDownloadError,
    ModelRepoVariant,
)
from nodeloom.app.services.model_install.model_install_download import RemoteFile
from nodeloom.backend.model_manager.model_files import SAFETENSORS_SUFFIX, WEIGHTS_SUFFIXES

# What a diffusers folder needs besides its weights: configs, tokenizer vocabularies and merges.
_SUPPORT_SUFFIXES = frozenset({".json", ".txt", ".model"})
# "model.fp16.safetensors", "model.fp16-00001-of-00002.safetensors": the label after the first dot.
_VARIANT_LABEL = re.compile(r"^[^.]+\.([a-z0-9]+)(?:-\d+-of-\d+)?\.[a-z]+$")


def repo_files(source: HFModelSource, endpoint: str, token: str | None) -> tuple[str, list[RemoteFile]]:
    """The name the model is installed under and its files, each with the URL of the repo's current revision and
    its path under that name; raises `ModelDownloadError` for a repo the hub does not have or holding no model."""
    # Imported here: the server starts without loading the hub's client, which only repo installs use.
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=endpoint, token=token).model_info(source.repo_id, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ModelDownloadError(
            f"The Hugging Face hub at {endpoint} has no repo '{source.repo_id}' (a private or gated one needs the "
            "hf_token setting)"
        ) from error
    except HfHubHTTPError as error:
        raise ModelDownloadError(f"The Hugging Face hub at {endpoint} refused '{source.repo_id}': {error}") from error
    # A name that could lead out of the job's folder is no file of a model.
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or [] if _is_plain(sibling.rfilename)}
    chosen = select_files(list(sizes), source.variant, source.subfolder)
    if not chosen:
        where = f"'{source.subfolder}' of " if source.subfolder else ""
        raise ModelDownloadError(f"{where}the Hugging Face repo '{source.repo_id}' holds no model files")
    root = PurePosixPath(source.subfolder) if source.subfolder else PurePosixPath()
    if len(chosen) == 1 and PurePosixPath(chosen[0]) == root:
        name = root.name
        placed = [(chosen[0], PurePosixPath(name))]
    else:
        name = root.name or source.repo_id.split("/")[1]
        placed = [(file, PurePosixPath(name) / PurePosixPath(file).relative_to(root)) for file in chosen]
    return name, [
        RemoteFile(
            url=hf_hub_url(source.repo_id, file, revision=info.sha, endpoint=endpoint), path=path, size=sizes[file]
        )
        for file, path in placed
    ]


def select_files(files: list[str], variant: ModelRepoVariant | None, subfolder: str | None) -> list[str]:
    """The files of a repo to download, sorted: under `subfolder` if given (or that file alone), the configs and
    vocabularies, and in each folder one set of weights: safetensors rather than pickles, and the `variant`'s
    files (`*.fp16.safetensors`) where the folder has them, else those without a variant label."""
    if subfolder is not None:
        subfolder = subfolder.strip("/")
        if subfolder in files and PurePosixPath(subfolder).suffix.lower() in WEIGHTS_SUFFIXES:
            return [subfolder]
        files = [file for file in files if PurePosixPath(file).is_relative_to(subfolder)]
    chosen = [file for file in files if PurePosixPath(file).suffix.lower() in _SUPPORT_SUFFIXES]
    pipeline_root = PurePosixPath(subfolder or "")
    # Single-file checkpoints beside a pipeline's folders are another copy of it: left out.
    is_pipeline = (pipeline_root / "model_index.json").as_posix() in files
    weights_by_folder: dict[PurePosixPath, list[PurePosixPath]] = {}
    for file in files:
        path = PurePosixPath(file)
        if path.suffix.lower() in WEIGHTS_SUFFIXES and not (is_pipeline and path.parent == pipeline_root):
            weights_by_folder.setdefault(path.parent, []).append(path)
    for weights in weights_by_folder.values():
        safetensors = [path for path in weights if path.suffix.lower() == SAFETENSORS_SUFFIX]
        candidates = safetensors or weights
        labels = {path: _variant_label(path) for path in candidates}
        wanted = [path for path in candidates if variant is not None and labels[path] == variant.value]
        plain = [path for path in candidates if labels[path] is None]
        chosen += [path.as_posix() for path in (wanted or plain or candidates)]
    return sorted(chosen)


def _is_plain(name: str) -> bool:
    """Whether a repo's file name is a relative path without `..`, `.` or empty parts."""
    path = PurePosixPath(name)
    return not path.is_absolute() and all(part not in ("", ".", "..") for part in name.split("/")) and "\\" not in name


def _variant_label(path: PurePosixPath) -> str | None:
    match = _VARIANT_LABEL.match(path.name)
    return match.group(1) if match else None
