"""Sharing on the Hub: the model card, loading a pushed folder by repo id, and the push itself.

No network here: loading by repo id uses the folder placed as a Hub-cache snapshot with `HF_HUB_OFFLINE=1`, and the
push goes to a loopback HTTP server started by the test that emulates the few Hub endpoints a push uses and records
the requests.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from fake_hub import FakeHub  # tests/ helpers (pytest's pythonpath)
from fresh_process import run_fresh_python
from hub_cache import offline_hub_env, write_hub_snapshot
from tiny_models import LABEL_NAMES, MINILM_PATH, build_tiny_model
from training_runs import CHILD_ENV, SCRIPT, check_child, folder_digest, keyword_args, run_child

from label_attention import hub

REPO_ID = "test-org/tiny-label-attention"
LABELS = LABEL_NAMES  # angiogenesis, apoptosis, inflammation
# The tiny model's own label descriptions: the first holds a "|", which the card's table must escape.
DESCRIPTIONS = [
    "Growth of new blood vessels | angiogenesis.",
    "Programmed cell death, apoptosis.",
    "Inflammatory response of tissue.",
]
TEXTS = [
    "Tumour cells secrete VEGF, which drives angiogenesis.",
    "Caspase activation led to apoptosis of the cells.",
    "No finding.",
]
TEST_METRICS = {
    "micro_f1": 0.8123456789,
    "macro_f1": 0.7712,
    "subset_accuracy": 0.55,
    "per_label_f1": {"angiogenesis": 0.91, "apoptosis": 0.62, "inflammation": 0.78},
    "num_documents": 120,
}
VALIDATION_METRICS = {"micro_f1": 0.83, "macro_f1": 0.79, "subset_accuracy": 0.6}
HYPERPARAMETERS = {"learning_rate": 5e-5, "epochs": 3, "batch_size": 16, "label_pooling": "first"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
HUB_PY = Path(hub.__file__).resolve()


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tokenizer):
    """A tiny random label-attention model (`tiny_models.build_tiny_model`, with DESCRIPTIONS and decision thresholds)
    saved with its tokenizer, and its in-memory scores on TEXTS."""
    model = build_tiny_model(tokenizer, decision_thresholds=[0.4, 0.5, 0.6])
    model.set_label_descriptions(tokenizer, DESCRIPTIONS)
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with torch.no_grad():
        probabilities = [torch.sigmoid(model(**tokenizer(text, return_tensors="pt")).logits)[0] for text in TEXTS]
    expected = [dict(zip(LABELS, row.tolist())) for row in probabilities]
    return folder, expected


@pytest.fixture
def model_folder(tiny_model, tmp_path):
    """A fresh copy of the saved model with its rendered model card."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model[0], folder)
    hub.render_model_card(
        folder,
        base_model=MINILM_PATH,
        dataset_name="hoc",
        test_metrics=TEST_METRICS,
        validation_metrics=VALIDATION_METRICS,
        hyperparameters=HYPERPARAMETERS,
        repo_id=REPO_ID,
    )
    return folder


def folder_state(folder: Path) -> dict:
    """`folder_digest` (every file with the sha256 of its bytes) and each file's mtime, which must not change either."""
    return {name: (digest, (folder / name).stat().st_mtime_ns) for name, digest in folder_digest(folder).items()}


def clean_env(tmp_path: Path, **overrides) -> dict:
    """`CHILD_ENV` for a child process that talks to the (loopback) Hub: no HF_ or HUGGING_FACE_ variable (no token,
    and not CHILD_ENV's HF_HUB_OFFLINE=1 either), an empty HF home, no proxy, and `overrides`."""
    env = {
        key: value
        for key, value in CHILD_ENV.items()
        if not key.startswith(("HF_", "HUGGING_FACE_"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    home = tmp_path / "hf_home"
    home.mkdir(exist_ok=True)
    env.update(HF_HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.update(overrides)
    return env


# --------------------------------------------------------------------------------------------------- the card


def test_model_card_metadata_round_trips_and_holds_the_run(model_folder):
    card = ModelCard.load(model_folder / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the bundled folder, mapped to its Hub id
    assert data.license == "apache-2.0"
    assert {"label-attention", "biomedical", "multi-label-classification", "custom_code"} <= set(data.tags)
    assert data.model_name == "tiny-label-attention"

    results = {result.metric_type: result for result in data.eval_results}
    expected = {key: value for key, value in TEST_METRICS.items() if isinstance(value, float)}
    assert {key: result.metric_value for key, result in results.items()} == expected  # exact, not rounded
    for result in results.values():
        assert result.task_type == "text-classification"
        assert result.dataset_split == "test"
        assert result.dataset_name == "hoc"
    # The metadata survives a second save/load unchanged.
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()

    body = card.text
    for name, description in zip(LABELS, DESCRIPTIONS):
        assert f"| {name} | {description.replace('|', chr(92) + '|')} |" in body
    assert "| 0 | angiogenesis |" in body and "0.4000" in body and "0.9100" in body  # threshold, per-label F1
    assert 'AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True)' in body
    assert f'pipeline("text-classification", model="{REPO_ID}", trust_remote_code=True, top_k=None)' in body
    assert "| learning_rate | 5e-05 |" in body and "| batch_size | 16 |" in body
    assert "| Micro F1 | 0.8300 | 0.8123 |" in body  # validation and test
    assert "not a medical device" in body
    assert "arXiv:2108.11809" in body and "@article{" in body
    assert "{{" not in str(card) and "{%" not in str(card)


def test_model_card_keeps_local_paths_out(tiny_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model[0], folder)
    local_encoder = tmp_path / "encoders" / "my-bert"
    local_encoder.mkdir(parents=True)
    card = hub.render_model_card(
        folder,
        base_model=str(local_encoder),
        dataset_name=str(tmp_path / "data" / "hoc"),
        test_metrics={"accuracy": 0.5},
        validation_metrics=None,
        hyperparameters={"output_dir": str(tmp_path / "outputs" / "run1")},
    )
    text = (folder / "README.md").read_text()
    assert text == str(card)
    assert card.data.base_model is None and card.data.datasets is None
    assert str(tmp_path) not in text
    assert card.data.eval_results[0].dataset_name == "hoc"
    assert "ORG/NAME" in text  # usage snippet placeholder when the repo id is unknown
    # A Hub-cache snapshot folder is mapped back to its repo id; a Hub id is kept; a dataset id goes to `datasets`.
    assert hub.hub_base_model_id("/cache/models--bert-base--uncased-x/snapshots/" + "a" * 40) == "bert-base/uncased-x"
    assert hub.hub_base_model_id("dmis-lab/biobert-v1.1") == "dmis-lab/biobert-v1.1"
    card = hub.render_model_card(
        folder, base_model="dmis-lab/biobert-v1.1", dataset_name="bigbio/hallmarks_of_cancer",
        test_metrics={}, validation_metrics={}, hyperparameters={},
    )
    assert card.data.datasets == ["bigbio/hallmarks_of_cancer"] and card.data.eval_results is None
    assert ModelCard.load(folder / "README.md").data.base_model == "dmis-lab/biobert-v1.1"


def test_model_card_describes_the_scorer_the_model_has(model_folder, tmp_path):
    assert "a per-label scorer" in (model_folder / "README.md").read_text()
    folder = tmp_path / "shared"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "label_scorer": "shared"}))
    text = str(hub.render_model_card(folder, base_model=None, dataset_name="hoc", test_metrics={},
                                     validation_metrics=None, hyperparameters={}))
    assert "one scorer shared by the labels" in text and "`add_labels` / `remove_labels`" in text
    assert "labels added later from their descriptions" in text and "a per-label scorer" not in text
    assert "comparing by a learnt metric on the encoder's states" in text  # the config class's default
    (folder / "config.json").write_text(json.dumps({**config, "label_scorer": "shared", "shared_scorer_metric": False}))
    text = str(hub.render_model_card(folder, base_model=None, dataset_name="hoc", test_metrics={},
                                     validation_metrics=None, hyperparameters={}))
    assert "comparing by the encoder's own cosine" in text and "learnt metric" not in text


def test_model_card_of_a_single_label_linear_baseline(tmp_path):
    """The training script's baseline (encoder + linear head, no custom code) gets a fitting card too."""
    folder = tmp_path / "baseline"
    folder.mkdir()
    config = {"model_type": "bert", "id2label": {"0": "negative", "1": "positive"},
              "problem_type": "single_label_classification", "_name_or_path": str(tmp_path / "local-bert")}
    (folder / "config.json").write_text(json.dumps(config))
    card = hub.render_model_card(folder, base_model=None, dataset_name=None, test_metrics={"accuracy": 0.9},
                                 validation_metrics=None, hyperparameters={}, repo_id="org/baseline")
    loaded = ModelCard.load(folder / "README.md")
    assert loaded.data.to_dict() == card.data.to_dict()
    assert loaded.data.base_model is None and str(tmp_path) not in str(card)
    assert "single-label-classification" in loaded.data.tags and "custom_code" not in loaded.data.tags
    assert [(r.metric_type, r.metric_value) for r in loaded.data.eval_results] == [("accuracy", 0.9)]
    assert 'pipeline("text-classification", model="org/baseline", top_k=None)' in card.text
    assert "softmax(-1)" in card.text and "| 1 | positive | — |" in card.text


# --------------------------------------------------------------------------------------------------- loading by id

LOAD_PROBE = """
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

spec = json.load(open(SPEC))
repo = spec["repo_id"]
model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
classifier = pipeline("text-classification", model=repo, trust_remote_code=True, top_k=None)
with torch.no_grad():
    probabilities = [model(**tokenizer(t, return_tensors="pt")).logits.sigmoid()[0].tolist() for t in spec["texts"]]
report({
    "model_module": type(model).__module__,
    "pipeline_model_module": type(classifier.model).__module__,
    "pipeline_scores": [{d["label"]: d["score"] for d in row} for row in classifier(spec["texts"], truncation=True)],
    "model_scores": [{model.config.id2label[i]: p for i, p in enumerate(row)} for row in probabilities],
    "thresholds": model.config.decision_thresholds,
})
"""


def test_folder_loads_by_repo_id_from_the_hub_cache_in_a_fresh_process(tiny_model, model_folder, tmp_path):
    """The folder as a Hub-cache snapshot loads by repo id offline, in a process that cannot import this package,
    and the pipeline there gives the scores of the model in memory."""
    _, expected = tiny_model
    cache = tmp_path / "hub_cache"
    write_hub_snapshot(cache, REPO_ID, model_folder)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"repo_id": REPO_ID, "texts": TEXTS}))
    work = tmp_path / "work"  # an empty working directory: "ORG/NAME" cannot be a local folder there
    result = run_fresh_python(
        f"SPEC = {str(spec)!r}\n" + LOAD_PROBE, work, env=offline_hub_env(cache, tmp_path / "modules"), timeout=240
    )
    # The model came from the code files in the snapshot.
    assert result["model_module"].startswith("transformers_modules.")
    assert result["pipeline_model_module"].startswith("transformers_modules.")
    assert result["thresholds"] == [0.4, 0.5, 0.6]
    for pipeline_scores, model_scores, memory_scores in zip(
        result["pipeline_scores"], result["model_scores"], expected, strict=True
    ):
        assert set(pipeline_scores) == set(LABELS)
        for label in LABELS:
            assert pipeline_scores[label] == pytest.approx(memory_scores[label], abs=1e-6)
            assert model_scores[label] == pytest.approx(memory_scores[label], abs=1e-6)


# --------------------------------------------------------------------------------------------------- pushing


def push_cli(tmp_path, folder, *args, module=False, **env_overrides):
    """Run the push command in a fresh process (`huggingface_hub` reads HF_ENDPOINT when it is imported)."""
    command = [sys.executable, "-m", "label_attention.hub"] if module else [sys.executable, str(HUB_PY)]
    work = tmp_path / "cli_cwd"
    work.mkdir(exist_ok=True)
    return run_child([*command, folder, *args], timeout=120, cwd=work, env=clean_env(tmp_path, **env_overrides))


def test_push_commits_exactly_the_folder(model_folder, tmp_path):
    before = folder_state(model_folder)
    with FakeHub() as fake:
        run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, module=True,
                       HF_ENDPOINT=fake.url, HF_TOKEN="hf_fake_token_for_tests")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Pushed" in run.stdout and f"/{REPO_ID}/commit/" in run.stdout
    assert folder_state(model_folder) == before

    create = [r for r in fake.requests if r["path"] == "/api/repos/create"]
    assert len(create) == 1 and json.loads(create[0]["body"])["organization"] == "test-org"
    assert all(r["auth"] == "Bearer hf_fake_token_for_tests" for r in fake.requests)
    assert len(fake.commits) == 1
    commit = fake.commits[0]
    assert commit["repo_id"] == REPO_ID and commit["revision"] == "main"
    files = fake.committed_files(commit)
    # Exactly the folder's files, byte for byte: the tested weights, config, both code files, tokenizer, card.
    assert {name: hashlib.sha256(data).hexdigest() for name, data in files.items()} == {
        name: digest for name, (digest, _) in before.items()
    }
    assert {"model.safetensors", "config.json", "README.md", "modeling_label_attention.py",
            "configuration_label_attention.py", "tokenizer_config.json"} <= set(files)
    assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    assert not [line for line in commit["lines"] if line["key"] == "deletedFile"]  # nothing to prune in a new repo
    validated = [r for r in fake.requests if r["path"] == "/api/validate-yaml"]
    assert json.loads(validated[0]["body"])["content"] == (model_folder / "README.md").read_text()


def test_push_to_a_branch_makes_the_revision_hold_exactly_the_folder(model_folder, tmp_path):
    stale = ["pytorch_model.bin", "old/notes.txt", ".gitattributes", "model.safetensors"]
    with FakeHub(remote_files=stale) as fake:
        run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, "--hub-private", "--hub-revision", "v1",
                       "--hub-token", "hf_token_from_flag", HF_ENDPOINT=fake.url)
    assert run.returncode == 0, run.stderr[-3000:]
    create = json.loads(next(r for r in fake.requests if r["path"] == "/api/repos/create")["body"])
    assert create.get("visibility") == "private" or create.get("private") is True
    assert any(r["path"] == f"/api/models/{REPO_ID}/branch/v1" for r in fake.requests)
    assert all(r["auth"] == "Bearer hf_token_from_flag" for r in fake.requests)
    commit = fake.commits[0]
    assert commit["revision"] == "v1"
    deleted = sorted(line["value"]["path"] for line in commit["lines"] if line["key"] == "deletedFile")
    assert deleted == ["old/notes.txt", "pytorch_model.bin"]  # .gitattributes kept, model.safetensors re-uploaded
    assert set(fake.committed_files(commit)) == set(folder_state(model_folder))


def test_push_failures_give_a_clear_message_and_leave_the_folder_intact(model_folder, tmp_path):
    before = folder_state(model_folder)

    # A server error on the commit (501: one that huggingface_hub does not retry with backoff, as it does 500).
    with FakeHub(commit_status=501) as fake:
        run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, HF_ENDPOINT=fake.url, HF_TOKEN="hf_x")
    assert run.returncode == 1
    assert "HTTP 501" in run.stderr and "uploading the folder" in run.stderr
    assert "Nothing was changed in the local folder" in run.stderr
    assert "Traceback" not in run.stderr
    assert len(fake.commits) == 1

    # No token anywhere (no HF_TOKEN, an empty HF_HOME): refused before any request.
    with FakeHub() as fake:
        run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, HF_ENDPOINT=fake.url)
    assert run.returncode == 1 and "No Hugging Face token found" in run.stderr and "HF_TOKEN" in run.stderr
    assert "Traceback" not in run.stderr and fake.requests == []

    # A bad repo id.
    for bad in ("no-namespace", "org/name/extra", "org/bad--name", "org/-name"):
        run = push_cli(tmp_path, model_folder, "--hub-model-id", bad, HF_TOKEN="hf_x", HF_ENDPOINT="http://127.0.0.1:9")
        assert run.returncode == 1 and "Invalid Hub model id" in run.stderr, (bad, run.stderr)
        assert "Traceback" not in run.stderr
    with pytest.raises(hub.HubPushError, match="Invalid Hub model id"):
        hub.push_to_hub(model_folder, "org/bad--name", token="hf_x")

    # Nobody listening at the endpoint.
    run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, HF_TOKEN="hf_x", HF_ENDPOINT="http://127.0.0.1:9")
    assert run.returncode == 1 and "creating the repo" in run.stderr and "Traceback" not in run.stderr

    assert folder_state(model_folder) == before


def test_folders_with_a_pickle_or_missing_parts_are_refused(model_folder, tmp_path):
    (model_folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (model_folder / "logs").mkdir()
    (model_folder / "logs" / "optimizer.pt").write_bytes(b"\x80\x04pickle")
    before = folder_state(model_folder)
    with pytest.raises(hub.HubPushError, match="pickle") as error:
        hub.push_to_hub(model_folder, REPO_ID, token="hf_x")
    assert "pytorch_model.bin" in str(error.value) and "logs/optimizer.pt" in str(error.value)
    run = push_cli(tmp_path, model_folder, "--hub-model-id", REPO_ID, HF_TOKEN="hf_x", HF_ENDPOINT="http://127.0.0.1:9")
    assert run.returncode == 1 and "pytorch_model.bin" in run.stderr and "Traceback" not in run.stderr
    assert folder_state(model_folder) == before
    # Left out explicitly, they are not uploaded (and not refused).
    (model_folder / "pytorch_model.bin").unlink()
    assert "logs/optimizer.pt" not in hub.collect_upload_files(model_folder, exclude=["logs/*"])

    # Incomplete folders: each problem is named.
    for missing, message in [
        ("model.safetensors", "no safetensors weights"),
        ("modeling_label_attention.py", "modeling_label_attention.py (named by auto_map"),
        ("tokenizer_config.json", "no tokenizer"),
        ("config.json", "no config.json"),
    ]:
        incomplete = tmp_path / f"without-{missing}"
        shutil.copytree(model_folder, incomplete, ignore=shutil.ignore_patterns(missing, "logs"))
        with pytest.raises(hub.HubPushError, match="Nothing was uploaded") as error:
            hub.push_to_hub(incomplete, REPO_ID, token="hf_x")
        assert message in str(error.value)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_folder, corrupt, ignore=shutil.ignore_patterns("logs"))
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(hub.HubPushError, match="not a valid safetensors file"):
        hub.push_to_hub(corrupt, REPO_ID, token="hf_x")


# ------------------------------------------------------------------------------------- pushing after training
# At the end of a run of the training script (`--push-to-hub`), to the loopback stand-in of the Hub: huggingface_hub
# reads HF_ENDPOINT at import time, so the run is a child process.


def train_and_push(args, tmp_path, **env_overrides) -> subprocess.CompletedProcess:
    """The script, in a child process, with no token but those given and no stored login (`clean_env`)."""
    command = [sys.executable, SCRIPT, *args, "--push-to-hub", "--hub-model-id", "test-org/kw"]
    return run_child(command, env=clean_env(tmp_path, **env_overrides))


def test_push_to_hub_uploads_exactly_the_tested_folder(tiny_encoder, small_keywords, tmp_path):
    output_dir = tmp_path / "pushed"
    args = keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1, "--batch-size", 8)
    with FakeHub() as fake:
        completed = train_and_push(args, tmp_path, HF_ENDPOINT=fake.url, HF_TOKEN="hf_fake_token")
    check_child(completed)
    assert "Pushed to" in completed.stdout
    model_dir = output_dir / "model"
    local_files = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert len(fake.commits) == 1
    assert fake.committed_files(fake.commits[0]) == local_files
    assert "model.safetensors" in local_files and not [name for name in local_files if name.endswith((".bin", ".pkl"))]
    assert "test-org/kw" in local_files["README.md"].decode()


def test_push_without_a_token_fails_before_training(tiny_encoder, small_keywords, tmp_path):
    output_dir = tmp_path / "not_pushed"
    args = keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1)
    started = time.time()
    completed = train_and_push(args, tmp_path)
    assert completed.returncode == 2
    assert "token" in completed.stderr and "Traceback" not in completed.stderr
    assert not (output_dir / "model").exists()
    assert time.time() - started < 60
