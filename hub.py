"""Sharing a trained model on the Hugging Face Hub: the model card, and pushing a saved model folder.

Two things live here:

* [`render_model_card`] fills the card template (`hub_card/README.md`, rendered with `huggingface_hub`'s
  `ModelCard` / `ModelCardData`) from a saved model folder and the run's metrics, and writes the folder's
  `README.md`.
* [`push_to_hub`] uploads a saved model folder, exactly as it is on disk, with `HfApi.upload_folder`: it creates the
  repo when needed (and the branch, with `revision`), and removes files of an earlier upload at that revision that the
  folder no longer has, so that what `from_pretrained("ORG/NAME", trust_remote_code=True)` loads is the folder that
  was tested.

  Pickles are refused, not skipped: a folder holding a `*.bin`, `*.pt`, `*.pth`, `*.pkl`, `*.pickle`, `*.ckpt`,
  `*.joblib` or `*.dill` file is not uploaded at all (the error lists the files), because silently leaving files out
  would upload something other than the folder that was tested. Only safetensors weights go up. The folder is never
  modified.

Command line (also `python -m label_attention.hub`):

    label-attention-push outputs/hoc/model --hub-model-id ORG/NAME [--hub-private] [--hub-revision BRANCH]

The token is `--hub-token`, else `HF_TOKEN`, else the stored login (`hf auth login`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, HFValidationError, filter_repo_objects, validate_repo_id

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "hub_card" / "README.md"
PAPER_URL = "https://arxiv.org/abs/2108.11809"
REPO_ID_PLACEHOLDER = "ORG/NAME"
DEFAULT_COMMIT_MESSAGE = "Upload label-attention text classifier"

# Files in pickle-based formats: never uploaded (they can run code when loaded).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill")
# Never part of the model, on top of what `upload_folder` always leaves out (`.git`, `.cache/huggingface`).
BYTE_CODE_PATTERNS = ("__pycache__/*", "*/__pycache__/*")

_METRIC_WORDS = {"f1": "F1", "auc": "AUC", "roc": "ROC", "pr": "PR", "mcc": "MCC", "map": "MAP", "ndcg": "nDCG"}


class HubPushError(RuntimeError):
    """A push to the Hub that could not be done; the message says why. The local folder is left as it was."""


# --------------------------------------------------------------------------------------------------- model card


@dataclass(frozen=True)
class _CardFacts:
    """What both the card's metadata and its text say about the model (the names are the template's)."""

    model_name: str
    base_model_id: str | None
    encoder_type: str
    dataset_id: str | None
    dataset_display: str | None
    is_label_attention: bool
    multi_label: bool


def render_model_card(
    model_dir: str | os.PathLike,
    *,
    base_model: str | None,
    dataset_name: str | None,
    test_metrics: Mapping[str, object] | None,
    validation_metrics: Mapping[str, object] | None,
    hyperparameters: Mapping[str, object] | None,
    license: str = "apache-2.0",
    model_name: str | None = None,
    repo_id: str | None = None,
    language: str | list[str] | None = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """Render the model card of the saved model in `model_dir`, write it to `model_dir/README.md` and return it.

    Args:
        model_dir: folder written by `save_pretrained` (its `config.json` gives the labels, their descriptions, the
            problem type, the decision thresholds and the encoder).
        base_model: Hub id of the encoder that was fine-tuned. A local folder is not a Hub id: the bundled
            all-MiniLM-L6-v2 folder and Hub-cache snapshot folders are mapped back to their repo id, any other local
            path is left out of the metadata (no filesystem path ends up in the card).
        dataset_name: Hub dataset id (`ORG/NAME`, goes into the `datasets` metadata) or a plain dataset name (shown in
            the card and used as the model-index dataset; a local path is reduced to its last component).
        test_metrics: the run's test metrics, e.g. `{"micro_f1": 0.81, "macro_f1": 0.74}`. Real-valued entries go
            into the `model-index`; other entries are left out, except `per_label_f1` (`{label: f1}`), shown in the
            label table.
        validation_metrics: the validation metrics of the same model (shown in the card, not in the `model-index`).
        hyperparameters: training hyper-parameters shown in the card (`{name: value}`).
        license: license id of the fine-tuned model.
        model_name: name of the model in the card and the `model-index`; defaults to the name part of `repo_id`, else
            a name made of the encoder, the head and the dataset.
        repo_id: `ORG/NAME` the model will be pushed to, used in the usage snippets (a placeholder when unknown).
        language: language metadata (e.g. `"en"`), left out when `None`.
        tags: extra tags.
    """
    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    if repo_id is not None:
        _check_repo_id(repo_id)
    facts = _card_facts(config, base_model, dataset_name, model_name, repo_id)
    test_metrics, validation_metrics = dict(test_metrics or {}), dict(validation_metrics or {})
    card = ModelCard.from_template(
        _card_metadata(facts, test_metrics, license=license, language=language, tags=tags),
        template_path=str(TEMPLATE_PATH),
        **_card_body(facts, config, repo_id, test_metrics, validation_metrics, hyperparameters or {}),
    )
    card.save(model_dir / "README.md")
    return card


def _card_facts(config: dict, base_model, dataset_name, model_name, repo_id) -> _CardFacts:
    # Label attention and the mean-pooling baseline nest the encoder's config; transformers' own heads are it.
    encoder = config["encoder"] if isinstance(config.get("encoder"), dict) else config
    encoder_type = encoder.get("model_type") or "unknown"
    base_model_id = hub_base_model_id(encoder.get("_name_or_path") if base_model is None else base_model)
    dataset_id, dataset_display = _dataset_names(dataset_name)
    is_label_attention = config.get("model_type") == "label_attention"
    if model_name is None:
        model_name = repo_id.split("/")[-1] if repo_id else _default_model_name(
            base_model_id, encoder_type, is_label_attention, dataset_display
        )
    problem_type = config.get("problem_type") or (
        "multi_label_classification" if config.get("decision_thresholds") else "single_label_classification"
    )
    return _CardFacts(
        model_name=model_name,
        base_model_id=base_model_id,
        encoder_type=encoder_type,
        dataset_id=dataset_id,
        dataset_display=dataset_display,
        is_label_attention=is_label_attention,
        multi_label=problem_type == "multi_label_classification",
    )


def _card_metadata(facts: _CardFacts, test_metrics: dict, *, license, language, tags) -> ModelCardData:
    """The card's YAML metadata, what the Hub indexes: license, base model, dataset, tags and the test scores."""
    test_scores = _scores(test_metrics)
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name=("Multi-label" if facts.multi_label else "Single-label") + " text classification",
            dataset_type=facts.dataset_id or facts.dataset_display or "custom",
            dataset_name=facts.dataset_display or "custom",
            dataset_split="test",
            metric_type=key,
            metric_name=_metric_title(key),
            metric_value=value,
        )
        for key, value in test_scores.items()
    ]
    card_tags = ["text-classification", "biomedical", "label-attention" if facts.is_label_attention else "linear-head",
                 "multi-label-classification" if facts.multi_label else "single-label-classification",
                 facts.encoder_type, "custom_code" if facts.is_label_attention else None, *tags]
    return ModelCardData(
        base_model=facts.base_model_id,
        datasets=[facts.dataset_id] if facts.dataset_id else None,
        language=language,
        library_name="transformers",
        license=license,
        metrics=sorted({_metric_family(key) for key in test_scores} - {None}) or None,
        model_name=facts.model_name,
        pipeline_tag="text-classification",
        tags=[tag for tag in dict.fromkeys(card_tags) if tag and tag != "unknown"],
        eval_results=eval_results or None,
    )


def _card_body(facts: _CardFacts, config: dict, repo_id, test_metrics: dict, validation_metrics: dict,
               hyperparameters: Mapping[str, object]) -> dict:
    """The template's variables for the card's text (the metadata's fields, `license` among them, are there too)."""
    labels = _labels(config)
    thresholds = config.get("decision_thresholds") if facts.multi_label else None
    if thresholds is not None and len(thresholds) != len(labels):
        thresholds = None
    per_label_f1 = test_metrics.get("per_label_f1")
    per_label_f1 = per_label_f1 if isinstance(per_label_f1, Mapping) else {}
    test_scores, validation_scores = _scores(test_metrics), _scores(validation_metrics)
    return {
        **asdict(facts),
        "repo_id": repo_id or REPO_ID_PLACEHOLDER,
        "repo_id_known": repo_id is not None,
        "remote_code": "auto_map" in config,  # custom classes (label attention, mean pooling) need trust_remote_code
        "paper_url": PAPER_URL,
        "num_labels": len(labels),
        "example_label": _cell(labels[0]) if labels else "label",
        "labels": _label_rows(labels, config.get("label_descriptions"), thresholds, per_label_f1),
        "has_thresholds": thresholds is not None,
        "has_label_f1": bool(per_label_f1),
        **{key: config.get(key) for key in ("label_attention_blocks", "label_attention_heads", "label_pooling",
                                            "fixed_label_embeddings", "label_scorer")},
        "shared_scorer_metric": config.get("shared_scorer_metric", True),  # absent: the config class's default
        "hyperparameters": [{"name": _cell(key), "value": _cell(_value_text(value))}
                            for key, value in hyperparameters.items()],
        "metric_rows": _metric_rows(test_scores, validation_scores),
        "has_validation": bool(validation_scores),
        "has_test": bool(test_scores),
    }


def _label_rows(labels: list[str], descriptions, thresholds, per_label_f1: Mapping) -> list[dict]:
    descriptions = descriptions or [None] * len(labels)
    rows = []
    for label_id, name in enumerate(labels):
        f1 = per_label_f1.get(name, per_label_f1.get(str(label_id)))
        rows.append(
            {
                "id": label_id,
                "name": _cell(name),
                "description": _cell(descriptions[label_id]) if descriptions[label_id] else "—",
                "threshold": _number(thresholds[label_id]) if thresholds else None,
                "f1": _number(f1) if _is_metric(f1) else ("—" if per_label_f1 else None),
            }
        )
    return rows


def _metric_rows(test_scores: dict[str, float], validation_scores: dict[str, float]) -> list[dict]:
    keys = list(test_scores) + [key for key in validation_scores if key not in test_scores]
    return [
        {
            "title": _metric_title(key),
            "validation": _number(validation_scores[key]) if key in validation_scores else "—",
            "test": _number(test_scores[key]) if key in test_scores else "—",
        }
        for key in keys
    ]


def hub_base_model_id(base_model: str | os.PathLike | None) -> str | None:
    """The Hub id of an encoder given by Hub id or local folder; `None` when it cannot be told (a local folder)."""
    if base_model is None or not str(base_model).strip():
        return None
    text = str(base_model).strip()
    path = Path(text).expanduser()
    for part in path.parts:  # a Hub-cache folder: .../models--ORG--NAME/snapshots/<commit>
        if part.startswith("models--") and len(part.split("--")) == 3:
            candidate = "/".join(part.split("--")[1:])
            return candidate if _repo_id_error(candidate) is None else None
    if path.exists():
        from label_attention.train_accelerate import bundled_encoder_hub_id  # lazy: train_accelerate imports hub

        return bundled_encoder_hub_id(path)
    if path.is_absolute() or text.startswith((".", "~")) or "\\" in text:
        return None
    return text if _repo_id_error(text) is None else None


def _read_config(model_dir: Path) -> dict:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: save the model with save_pretrained first.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} does not hold a JSON object.")
    return config


def _labels(config: dict) -> list[str]:
    id2label = config.get("id2label") or {}
    if id2label:
        return [str(id2label[key]) for key in sorted(id2label, key=int)]
    count = len(config.get("label_descriptions") or []) or int(config.get("num_labels") or 0)
    return [f"LABEL_{i}" for i in range(count)]


def _dataset_names(dataset_name: str | None) -> tuple[str | None, str | None]:
    """(Hub dataset id or None, name to show)."""
    if dataset_name is None or not str(dataset_name).strip():
        return None, None
    text = str(dataset_name).strip()
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith((".", "~")) or "\\" in text or path.exists():
        return None, path.resolve().name or None
    if text.count("/") == 1 and _repo_id_error(text) is None:
        return text, text
    return None, text


def _default_model_name(base_model_id, encoder_type, is_label_attention, dataset_display) -> str:
    parts = [base_model_id.split("/")[-1] if base_model_id else encoder_type,
             "label-attention" if is_label_attention else "classifier", dataset_display]
    name = "-".join(part for part in parts if part and part != "unknown")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "label-attention-classifier"


def _scores(metrics: Mapping[str, object]) -> dict[str, float]:
    """The real-valued entries of `metrics` (counts and per-label tables are not scores)."""
    return {key: float(value) for key, value in metrics.items() if _is_metric(value)}


def _is_metric(value) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and math.isfinite(float(value))
    )


def _metric_title(key: str) -> str:
    words = [_METRIC_WORDS.get(word.lower(), word) for word in re.split(r"[_\s]+", str(key)) if word]
    if not words:
        return str(key)
    first = words[0] if words[0] in _METRIC_WORDS.values() else words[0].capitalize()
    return " ".join([first] + words[1:])


def _metric_family(key: str) -> str | None:
    """The Hub metric id (`metrics` metadata) a metric key belongs to, if any."""
    key = str(key).lower()
    for family in ("f1", "accuracy", "precision", "recall", "roc_auc", "mcc"):
        if family in key:
            return family
    return None


def _number(value) -> str:
    return f"{float(value):.4f}"


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (str, os.PathLike)) and os.path.isabs(str(value)):
        return Path(value).name  # no local filesystem paths in a public card
    return str(value)


def _cell(text) -> str:
    """Text made safe for a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


# --------------------------------------------------------------------------------------------------- pushing


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    exclude: Sequence[str] = (),
    prune: bool = True,
) -> str:
    """Upload the saved model folder `model_dir` to the Hub model repo `repo_id` (`ORG/NAME`) with
    `HfApi.upload_folder`: one commit for a model folder (`upload_folder` splits only very large folders).

    Checks, before anything goes over the network: the folder is a complete, loadable model folder (`config.json`,
    safetensors weights, the custom-code files its `auto_map` names, the tokenizer) and holds no pickle; `repo_id` is
    a valid `ORG/NAME`; a token is found (`token`, else `HF_TOKEN`, else the stored login). Then creates the repo if
    needed (`private` applies only to a new repo), the branch `revision` if it does not exist, and commits every file
    of the folder. With `prune` (the default), files at that revision that the folder does not have are deleted in the
    same commit (`.gitattributes` is kept), so the revision holds exactly the folder.

    Args:
        exclude: glob patterns of folder-relative paths to leave out of the upload (e.g. `"logs/*"`; `*` matches
            across `/`, as in `upload_folder`); pickles that match are left out too instead of being refused.

    Returns the URL of the commit. Raises [`HubPushError`] with a clear message on any failure; the local folder is
    never modified.
    """
    model_dir = Path(model_dir)
    check_model_folder(model_dir, collect_upload_files(model_dir, exclude=exclude))
    token = check_hub_settings(repo_id, token=token)
    if revision is not None and not revision.strip():
        revision = None

    api = HfApi(token=token)
    target = f"{repo_id}" + (f" (revision {revision})" if revision else "")
    step = "creating the repo"
    try:
        # private=None (not False) when not asked: a new repo then follows the organisation's default visibility.
        api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        if revision is not None and revision != "main" and not revision.startswith("refs/pr/"):
            step = f"creating the branch {revision!r}"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        step = "uploading the folder"
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=model_dir,
            revision=revision,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            ignore_patterns=_ignore_patterns(exclude),
            delete_patterns="*" if prune else None,  # files not re-uploaded are deleted; .gitattributes is kept
        )
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        raise HubPushError(
            f"Push of {model_dir} to {target} failed while {step}: {_describe_hub_error(err)}\n"
            f"Nothing was changed in the local folder {model_dir}; fix the problem and run the push again "
            f"(label-attention-push {model_dir} --hub-model-id {repo_id})."
        ) from err
    return str(info.commit_url or info.oid)


def check_hub_settings(repo_id: str, token: str | None = None) -> str:
    """Check `repo_id` (must be `ORG/NAME`) and find a token; returns the token. Raises [`HubPushError`].

    Cheap and offline: a training script can call it before training, so that a bad `--hub-model-id` or a missing
    login is reported at once rather than after the run.
    """
    _check_repo_id(repo_id)
    return _resolve_token(token)


def collect_upload_files(model_dir: str | os.PathLike, *, exclude: Sequence[str] = ()) -> list[str]:
    """The folder-relative POSIX paths that a push uploads: the files that `upload_folder` takes with the push's
    ignore patterns. Raises [`HubPushError`] if the folder is missing or holds a pickle."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HubPushError(f"{model_dir} is not a folder: give the folder the model was saved to.")
    # Listed and filtered as upload_folder does it, so that what is checked is what goes up.
    paths = sorted(path.relative_to(model_dir).as_posix() for path in model_dir.glob("**/*") if path.is_file())
    files = list(filter_repo_objects(paths, ignore_patterns=_ignore_patterns(exclude)))
    pickles = [name for name in files if Path(name).suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise HubPushError(
            f"{model_dir} holds pickle files, which are never uploaded: {', '.join(pickles)}. Only safetensors "
            "weights go to the Hub: remove these files (or leave them out with --exclude) and push again. Nothing "
            "was uploaded."
        )
    return files


def _ignore_patterns(exclude: Sequence[str]) -> list[str]:
    # A new list each time: upload_folder extends the list it is given.
    return [*exclude, *BYTE_CODE_PATTERNS, *DEFAULT_IGNORE_PATTERNS]


def check_model_folder(model_dir: str | os.PathLike, files: Iterable[str] | None = None) -> None:
    """Check that `model_dir` is a complete model folder that `from_pretrained(..., trust_remote_code=True)` and
    `pipeline(...)` can load from the Hub. Raises [`HubPushError`] naming what is missing."""
    model_dir = Path(model_dir)
    files = set(collect_upload_files(model_dir) if files is None else files)
    problems = []
    if "config.json" not in files:
        raise HubPushError(f"{model_dir} has no config.json: it is not a saved model folder. Nothing was uploaded.")
    try:
        config = _read_config(model_dir)
    except ValueError as err:
        raise HubPushError(f"{err} Nothing was uploaded.") from err

    if "model.safetensors" in files:
        problems += _safetensors_problems(model_dir, "model.safetensors")
    elif "model.safetensors.index.json" in files:
        try:
            index = json.loads((model_dir / "model.safetensors.index.json").read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            problems.append("model.safetensors.index.json is not a valid safetensors index")
            shards = []
        for shard in shards:
            if shard not in files:
                problems.append(f"the weight shard {shard} named by model.safetensors.index.json is missing")
            else:
                problems += _safetensors_problems(model_dir, shard)
    else:
        problems.append("no safetensors weights (model.safetensors): save with save_pretrained(safe_serialization="
                        "True)")

    auto_map = config.get("auto_map") or {}
    if config.get("model_type") == "label_attention" and "AutoModelForSequenceClassification" not in auto_map:
        problems.append("config.json has no auto_map entry for AutoModelForSequenceClassification, so "
                        "trust_remote_code loading cannot find the model class")
    for reference in auto_map.values():
        for item in reference if isinstance(reference, (list, tuple)) else [reference]:
            if isinstance(item, str) and "--" not in item and "." in item:
                module_file = item.rsplit(".", 1)[0].replace(".", "/") + ".py"
                if module_file not in files:
                    problems.append(f"{module_file} (named by auto_map in config.json) is missing")
    if "tokenizer_config.json" not in files:
        problems.append("no tokenizer (tokenizer_config.json): save the tokenizer in the same folder, or pipeline() "
                        "cannot load the model")
    if "README.md" in files:
        try:
            ModelCard.load(model_dir / "README.md")
        except Exception as err:  # noqa: BLE001
            problems.append(f"README.md has invalid metadata ({err})")
    else:
        logger.warning("%s has no README.md: the model is pushed without a model card.", model_dir)
    if problems:
        raise HubPushError(
            f"{model_dir} is not a complete model folder: " + "; ".join(dict.fromkeys(problems)) + ". Nothing was "
            "uploaded."
        )


def _safetensors_problems(model_dir: Path, name: str) -> list[str]:
    """Reads the whole file, tensor by tensor: a file cut short (an interrupted copy or save) is caught here, not by
    whoever downloads it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(model_dir / name, framework="pt") as weights:
            for key in weights.keys():
                weights.get_tensor(key)
    except (OSError, SafetensorError) as err:
        return [f"{name} is not a valid safetensors file ({err}): it is damaged or cut short; save the model again"]
    return []


def _repo_id_error(repo_id: str) -> str | None:
    """Why the Hub would refuse `repo_id` (`NAME` or `ORG/NAME`), or None if it would not."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return str(err)
    return None


def _check_repo_id(repo_id) -> None:
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise HubPushError(
            f"Invalid Hub model id {repo_id!r}: expected ORG/NAME (your user or organisation name, a slash, then the "
            "model name), e.g. my-lab/biomed-label-attention. Nothing was uploaded."
        )
    error = _repo_id_error(repo_id)
    if error is not None:
        raise HubPushError(
            f"Invalid Hub model id {repo_id!r}: {error} Use ORG/NAME with letters, digits, '-', '_' or '.' (not at "
            "the start or end, no '--' or '..', at most 96 characters). Nothing was uploaded."
        )


def _resolve_token(token: str | None) -> str:
    if token:
        return token
    from huggingface_hub import get_token

    try:
        found = get_token()
    except Exception as err:  # noqa: BLE001 - e.g. a failed OIDC exchange
        raise HubPushError(f"Could not get a Hugging Face token: {err}. Nothing was uploaded.") from err
    if not found:
        raise HubPushError(
            "No Hugging Face token found: set the HF_TOKEN environment variable to a token with write access, log in "
            "once with `hf auth login`, or pass --hub-token. Nothing was uploaded."
        )
    return found


def _describe_hub_error(err: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to push."
    message = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, HfHubHTTPError) and getattr(err, "response", None) is not None:
        status = err.response.status_code
        hint = {
            401: "the token was rejected: check HF_TOKEN / your login.",
            403: "the token may not write to this namespace: use a token with write access to it.",
            404: "the repo or revision was not found, or the token cannot see it.",
        }.get(status)
        if isinstance(err, RepositoryNotFoundError) and status != 404:
            hint = hint or "the repo was not found, or the token cannot see it."
        if status >= 500:
            hint = "the Hub had a server error; try again later."
        return f"HTTP {status}: {message}" + (f" Hint: {hint}" if hint else "")
    if isinstance(err, (ConnectionError, TimeoutError)) or any(
        word in type(err).__name__ for word in ("Connect", "Timeout", "Network", "Proxy")
    ):
        from huggingface_hub import constants

        return f"could not reach the Hub at {constants.ENDPOINT} ({type(err).__name__}: {message})."
    return f"{type(err).__name__}: {message}"


# --------------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="label-attention-push",
        description="Push a saved label-attention model folder (safetensors weights, config, code, tokenizer, model "
        "card) to the Hugging Face Hub, exactly as it is on disk.",
    )
    parser.add_argument("model_dir", help="Folder the model was saved to (e.g. outputs/hoc/model).")
    parser.add_argument("--hub-model-id", required=True, help="ORG/NAME of the Hub model repo (created if needed).")
    parser.add_argument("--hub-private", action="store_true", help="Make the repo private if it is created.")
    parser.add_argument("--hub-revision", default=None, help="Branch to push to (created if needed); default main.")
    parser.add_argument("--hub-token", default=None, help="Hub token; defaults to HF_TOKEN or the stored login.")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="Leave out folder-relative paths matching this glob (repeatable).")
    parser.add_argument("--keep-remote-files", action="store_true",
                        help="Keep files already at the revision that the folder does not have (default: delete "
                        "them so that the revision holds exactly the folder).")
    args = parser.parse_args(argv)
    try:
        url = push_to_hub(
            args.model_dir,
            args.hub_model_id,
            private=args.hub_private,
            revision=args.hub_revision,
            token=args.hub_token,
            commit_message=args.commit_message,
            exclude=args.exclude,
            prune=not args.keep_remote_files,
        )
    except HubPushError as err:
        print(f"label-attention-push: error: {err}", file=sys.stderr)
        return 1
    print(f"Pushed {args.model_dir} to {args.hub_model_id}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
