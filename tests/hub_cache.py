"""Build the on-disk layout of a Hugging Face Hub cache, so tests can load models "by repo id" offline.

huggingface_hub stores a downloaded repository as

    <HF_HUB_CACHE>/models--ORG--NAME/
        blobs/<etag>                   file contents (etag: sha256 for LFS files, git blob sha1 for the others)
        refs/main                      the 40-hex commit hash that `main` points to
        snapshots/<commit>/<path>      relative symlinks into ../../blobs

`write_hub_snapshot` writes that layout from a local folder (e.g. one made by `save_pretrained`); run the loading
code in a process with `HF_HUB_CACHE` pointing at the cache and `HF_HUB_OFFLINE=1` (see `offline_hub_env`).
"""

import hashlib
import os
from pathlib import Path

# Files that the Hub stores with Git LFS (their etag is the sha256 of the content).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """`ORG/NAME` -> `models--ORG--NAME`, as huggingface_hub names cache folders."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def _etag(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_commit_hash(folder: Path) -> str:
    """A deterministic 40-hex "commit" for the folder's content."""
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + _etag(path).encode())
    return digest.hexdigest()


def write_hub_snapshot(cache_dir, repo_id: str, folder, commit: str | None = None, ref: str = "main") -> Path:
    """Store every file of `folder` in the Hub cache `cache_dir` as revision `ref` of model repo `repo_id`.

    Returns the snapshot folder, `<cache_dir>/models--ORG--NAME/snapshots/<commit>`.
    """
    cache_dir, folder = Path(cache_dir), Path(folder)
    commit = commit or fake_commit_hash(folder)
    repo_dir = cache_dir / repo_folder_name(repo_id)
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for source in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo_dir / "blobs" / _etag(source)
        if not blob.exists():
            blob.write_bytes(source.read_bytes())
        link = snapshot / source.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


def offline_hub_env(cache_dir, modules_cache) -> dict[str, str]:
    """Environment variables for a process that must load from the Hub cache `cache_dir` only."""
    return {
        "HF_HUB_CACHE": str(cache_dir),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(modules_cache),
    }
