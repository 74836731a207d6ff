"""Saving and loading. Saved folders, a Hub cache snapshot loaded by repo id, and a classifier over the real
all-MiniLM-L6-v2 encoder all load in ONE fresh process through trust_remote_code (without this package, offline)
and must give the outputs of the models that were saved."""

import json
from pathlib import Path

import pytest
import torch

from fresh_process import probe_checkpoints  # tests/ helpers (pytest's pythonpath)
from hub_cache import offline_hub_env, repo_folder_name, write_hub_snapshot
from tiny_models import DOCUMENTS, FAMILIES, LABEL_DESCRIPTIONS, LABEL_NAMES, MINILM_PATH, build_tiny_model, encode
from training_runs import DATA

from label_attention import LabelAttentionForSequenceClassification

CODE_FILES = ("configuration_label_attention.py", "modeling_label_attention.py")
LONG_TEXT = "Tumour cells divide and spread. " * 110  # over 512 tokens: the pipeline must truncate it
PIPELINE_TEXTS = [*DOCUMENTS, LONG_TEXT]
# The families whose checkpoints also go through the pipeline, and their problem types (the others: multi-label).
PIPELINE_CASES = {"bert": "multi_label_classification", "roberta": "single_label_classification"}
HUB_REPO_ID = "label-attention-tests/tiny-bert"
HOC = DATA / "hoc"
STAND_IN_ABSTRACT = (
    "Angiogenesis is required for tumour growth beyond a few millimetres. We show that inhibition of vascular "
    "endothelial growth factor signalling reduces microvessel density and induces apoptosis of tumour cells in a "
    "xenograft model of colorectal cancer, while sparing normal tissue."
)


def hoc_labels_and_abstract():
    """The HoC label names, descriptions and first test abstract when the shared data is there, else stand-ins."""
    if (HOC / "labels.json").exists() and (HOC / "test.jsonl").exists():
        labels = json.loads((HOC / "labels.json").read_text())["labels"]
        with open(HOC / "test.jsonl") as f:
            abstract = json.loads(f.readline())["text"]
        return [label["name"] for label in labels], [label["description"] for label in labels], abstract
    names = ["Inducing angiogenesis", "Resisting cell death", "Tumor promoting inflammation"]
    descriptions = [
        "Inducing angiogenesis: cancer cells initiate the formation of new blood vessels.",
        "Resisting cell death: cancer cells evade apoptosis.",
        "Tumor promoting inflammation: inflammation fosters tumour growth.",
    ]
    return names, descriptions, STAND_IN_ABSTRACT


def pipeline_expectations(model, tokenizer, texts) -> list[dict[str, float]]:
    """What `pipeline(..., top_k=None)` must give for each text: label name -> probability from the model's logits
    (sigmoid per label for multi-label, softmax for single-label)."""
    expected = []
    for text in texts:
        with torch.no_grad():
            logits = model(**tokenizer(text, truncation=True, return_tensors="pt")).logits[0]
        if model.config.problem_type == "multi_label_classification":
            scores = torch.sigmoid(logits)
        else:
            scores = torch.softmax(logits, -1)
        expected.append({model.config.id2label[i]: score.item() for i, score in enumerate(scores)})
    return expected


def save_checkpoint(model, tokenizer, folder, inputs, pipeline_texts=None) -> dict:
    """Save `model` (in eval mode) and `tokenizer` into `folder`; return a probe case holding, under `expected`,
    the in-memory model's outputs on `inputs` (and pipeline scores on `pipeline_texts`)."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with torch.no_grad():
        expected = {
            "logits": model(**inputs).logits,
            "base_last_hidden_state": model.label_attention(**inputs).last_hidden_state,
        }
    case = {"source": str(folder), "inputs": {k: v.tolist() for k, v in inputs.items()}, "expected": expected}
    if pipeline_texts:
        case["pipeline_texts"] = pipeline_texts
        expected["pipeline"] = pipeline_expectations(model, tokenizer, pipeline_texts)
    return case


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, tokenizer):
    """One saved tiny checkpoint (2 label-attention blocks) per family."""
    cases = {}
    for family in FAMILIES:
        problem_type = PIPELINE_CASES.get(family, "multi_label_classification")
        model = build_tiny_model(tokenizer, family, label_attention_blocks=2, problem_type=problem_type)
        folder = tmp_path_factory.mktemp(f"saved-{family}")
        texts = PIPELINE_TEXTS if family in PIPELINE_CASES else None
        cases[family] = save_checkpoint(model, tokenizer, folder, encode(tokenizer, DOCUMENTS), texts)
    return cases


@pytest.fixture(scope="module")
def minilm_checkpoint(tmp_path_factory):
    """A classifier over the real, pretrained all-MiniLM-L6-v2 encoder with the HoC labels, saved with its tokenizer."""
    names, descriptions, abstract = hoc_labels_and_abstract()
    model, tokenizer = LabelAttentionForSequenceClassification.from_encoder_pretrained(MINILM_PATH, names, descriptions)
    inputs = tokenizer([abstract], truncation=True, return_tensors="pt")
    folder = tmp_path_factory.mktemp("saved-minilm")
    case = save_checkpoint(model.eval(), tokenizer, folder, inputs, [abstract, f"{abstract} {LONG_TEXT}"])
    return {**case, "label_names": names, "label_descriptions": descriptions}


@pytest.fixture(scope="module")
def hub_cache(saved_models, tmp_path_factory):
    """The BERT checkpoint of `saved_models`, stored as `HUB_REPO_ID` in a Hub cache: (cache folder, snapshot)."""
    cache = tmp_path_factory.mktemp("hf-cache") / "hub"
    return cache, write_hub_snapshot(cache, HUB_REPO_ID, saved_models["bert"]["source"])


@pytest.fixture(scope="module")
def probed(saved_models, minilm_checkpoint, hub_cache, tmp_path_factory):
    """Every checkpoint above loaded in one fresh, offline process that sees the Hub cache: source -> its report."""
    cases = [*saved_models.values(), minilm_checkpoint, {**saved_models["bert"], "source": HUB_REPO_ID}]
    cases = [{key: case[key] for key in ("source", "inputs", "pipeline_texts") if key in case} for case in cases]
    work = tmp_path_factory.mktemp("probe")
    reports = probe_checkpoints(cases, work, env=offline_hub_env(hub_cache[0], work / "modules"))
    return {case["source"]: report for case, report in zip(cases, reports)}


def assert_loads_like_saved(seen: dict, case: dict, label_names: list[str], label_descriptions: list[str]):
    """The fresh process loaded the remote-code classes, with every weight, and got the saved model's outputs."""
    for name, class_name in [
        ("config_class", "configuration_label_attention.LabelAttentionConfig"),
        ("model_class", "modeling_label_attention.LabelAttentionForSequenceClassification"),
        ("base_class", "modeling_label_attention.LabelAttentionModel"),
    ]:
        assert seen[name].startswith("transformers_modules.") and seen[name].endswith(class_name), seen[name]
    assert seen["label_descriptions"] == label_descriptions
    assert seen["id2label"] == {str(i): name for i, name in enumerate(label_names)}
    assert seen["model_loading"]["missing_keys"] == [] and seen["model_loading"]["unexpected_keys"] == []
    assert seen["base_loading"]["missing_keys"] == []
    assert seen["base_loading"]["unexpected_keys"] and all(
        key.startswith("scorer.") for key in seen["base_loading"]["unexpected_keys"]
    )
    assert seen["model_training"] is False
    logits = torch.tensor(seen["logits"])
    assert logits.shape == (len(case["inputs"]["input_ids"]), len(label_names))
    torch.testing.assert_close(logits, case["expected"]["logits"], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        torch.tensor(seen["base_last_hidden_state"]), case["expected"]["base_last_hidden_state"], rtol=0, atol=1e-6
    )


def assert_pipeline_scores(seen: dict, case: dict, problem_type: str):
    """`top_k=None` gave every label, by name, with the probability the saved model gives; untruncated input longer
    than the encoder's positions was read (in windows)."""
    assert len(seen["pipeline"]) == len(case["pipeline_texts"])
    for results, expected in zip(seen["pipeline"], case["expected"]["pipeline"]):
        scores = {result["label"]: result["score"] for result in results}
        assert len(results) == len(expected) and scores.keys() == expected.keys()
        assert scores == pytest.approx(expected, abs=1e-6)
        assert all(0 <= score <= 1 for score in scores.values())
        if problem_type == "single_label_classification":
            assert sum(scores.values()) == pytest.approx(1, abs=1e-6)
    assert seen["untruncated_error"] is None
    assert {result["label"] for result in seen["untruncated"]} == set(case["expected"]["pipeline"][-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_folder_layout(saved_models, family):
    folder = Path(saved_models[family]["source"])
    files = {path.name for path in folder.iterdir()}
    assert "model.safetensors" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], files
    assert set(CODE_FILES) <= files
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "label_attention"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_label_attention.LabelAttentionConfig",
        "AutoModel": "modeling_label_attention.LabelAttentionModel",
        "AutoModelForSequenceClassification": "modeling_label_attention.LabelAttentionForSequenceClassification",
    }
    assert config["label_descriptions"] == LABEL_DESCRIPTIONS
    assert config["encoder"]["model_type"] == family


def test_reload_in_process_keeps_descriptions_and_fixed_embeddings(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer, "electra", fixed_label_embeddings=True)
    model.save_pretrained(tmp_path)
    loaded = LabelAttentionForSequenceClassification.from_pretrained(tmp_path)
    for name in ("label_input_ids", "label_attention_mask", "fixed_label_embeddings"):
        torch.testing.assert_close(getattr(loaded.label_attention, name), getattr(model.label_attention, name))
    inputs = encode(tokenizer, DOCUMENTS)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_fresh_process_loads_saved_folder(saved_models, probed, family):
    case = saved_models[family]
    assert_loads_like_saved(probed[case["source"]], case, LABEL_NAMES, LABEL_DESCRIPTIONS)
    if family in PIPELINE_CASES:
        assert_pipeline_scores(probed[case["source"]], case, PIPELINE_CASES[family])


def test_fresh_process_loads_repo_id_from_offline_hub_cache(saved_models, hub_cache, probed):
    cache, snapshot = hub_cache
    # The layout huggingface_hub writes: refs/main holds the commit; snapshot files are symlinks into blobs/.
    repo_dir = cache / repo_folder_name(HUB_REPO_ID)
    commit = (repo_dir / "refs" / "main").read_text()
    assert len(commit) == 40 and int(commit, 16) >= 0 and snapshot.name == commit
    weights = snapshot / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent == (repo_dir / "blobs").resolve()

    case = saved_models["bert"]
    assert_loads_like_saved(probed[HUB_REPO_ID], case, LABEL_NAMES, LABEL_DESCRIPTIONS)
    assert_pipeline_scores(probed[HUB_REPO_ID], case, PIPELINE_CASES["bert"])


def test_fresh_process_classifies_an_abstract_with_pretrained_encoder(minilm_checkpoint, probed):
    case = minilm_checkpoint
    seen = probed[case["source"]]
    assert_loads_like_saved(seen, case, case["label_names"], case["label_descriptions"])
    assert_pipeline_scores(seen, case, "multi_label_classification")
