"""ONNX export (`label_attention.onnx_export`) and ONNX Runtime inference, on tiny randomly initialised models.

Two saved models are exported once per module (the exporter's fixed cost is ~10 s a graph, whatever the model's
size): a multi-label BERT (two blocks, the shared scorer, tuned thresholds; exported through the command line, with
--quantize) and a single-label DistilBERT (no token_type_ids, fixed label embeddings, mean pooling, the per-label
scorer); a third, whose encoder reads 32 tokens, is exported with its windowed graph for long documents. Every check
compares ONNX Runtime with the PyTorch model or with `transformers.pipeline(..., trust_remote_code=True)` on the same
folder.
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny_models import DOCUMENTS, LABEL_NAMES, MINILM_PATH, build_tiny_model, tiny_config
from training_runs import REPO, check_child, run_child, write_data_folder
from transformers import AutoTokenizer, pipeline

from label_attention import LabelAttentionForSequenceClassification, onnx_export
from label_attention.onnx_export import OnnxExportError, OnnxTextClassificationPipeline, export_onnx, main

THRESHOLDS = [0.3, 0.5, 0.6]
LONG_TEXT = "Tumour cells divide and spread. " * 110  # over 512 tokens
TEXTS = [*DOCUMENTS, "Apoptosis.", "Inflamed tissue around the tumour recruited macrophages and neutrophils."]


def save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory, tokenizer):
    """(saved folder, in-memory model): multi-label BERT with the shared scorer, exported by the command line into
    `folder/onnx`."""
    model = build_tiny_model(
        tokenizer, "bert", label_attention_blocks=2, label_scorer="shared", decision_thresholds=THRESHOLDS
    )
    with torch.no_grad():  # the blocks' term starts at 0: made to count, so that the graph must compute it
        model.scorer.weight.normal_(generator=torch.Generator().manual_seed(0))
    folder = save(model, tokenizer, tmp_path_factory.mktemp("onnx-multi"))
    assert main([str(folder), "--quantize"]) == 0
    return folder, model


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    """(saved folder, in-memory model, export result): single-label DistilBERT, exported by `export_onnx` into a
    folder of its own. Its tokenizer, like DistilBERT's, returns no token_type_ids."""
    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH, model_input_names=["input_ids", "attention_mask"])
    model = build_tiny_model(tokenizer, "distilbert", problem_type="single_label_classification",
                             fixed_label_embeddings=True, label_pooling="mean")  # fmt: skip
    folder = save(model, tokenizer, tmp_path_factory.mktemp("onnx-single"))
    result = export_onnx(folder, tmp_path_factory.mktemp("onnx-single-out"))
    return folder, model, result


def random_inputs(batch_size, length, with_token_types, seed):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 30522, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch_size):
        attention_mask[row, int(torch.randint(1, length + 1, (1,), generator=generator)) :] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_token_types:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return inputs


def assert_same_results(ours, theirs, atol=1e-5):
    """Same nesting, same labels in the same order, scores equal to float rounding."""
    assert type(ours) is type(theirs), (ours, theirs)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_same_results(mine, other, atol)
    else:
        assert set(ours) == {"label", "score"} and ours["label"] == theirs["label"], (ours, theirs)
        assert isinstance(ours["score"], float) and ours["score"] == pytest.approx(theirs["score"], abs=atol)


# ------------------------------------------------------------------------------------------------ the graph


def test_graph_encodes_only_documents(multi_label, single_label):
    for onnx_dir, model, inputs in [
        (multi_label[0] / "onnx", multi_label[1], ["input_ids", "attention_mask", "token_type_ids"]),
        (single_label[2].output_dir, single_label[1], ["input_ids", "attention_mask"]),
    ]:
        graph = onnx.load(str(onnx_dir / "model.onnx")).graph
        assert [node.name for node in graph.input] == inputs
        for node in graph.input:
            dims = node.type.tensor_type.shape.dim
            assert [dim.dim_param for dim in dims] == ["batch", "sequence"] and not any(d.dim_value for d in dims)
        (output,) = graph.output
        assert output.name == "logits"
        assert output.type.tensor_type.shape.dim[1].dim_value == model.config.num_labels
        # No tokenised descriptions in the graph: they are never encoded at inference.
        names = [initializer.name for initializer in graph.initializer]
        assert not [name for name in names if "label_input_ids" in name or "label_attention_mask" in name]
        assert not [i for i in graph.initializer if tuple(i.dims) == (model.config.num_labels, 64)]
        # About the size of the weights (the graph stores each once).
        weights = sum(p.numel() * 4 for p in model.parameters())
        assert 0.9 < (onnx_dir / "model.onnx").stat().st_size / weights < 1.1
        # Only the exported files (no staging folder left behind).
        assert not list(onnx_dir.glob(".onnx-export-*"))


def test_metadata_and_folder(multi_label, single_label):
    onnx_dir = multi_label[0] / "onnx"
    assert {path.name for path in onnx_dir.iterdir()} == {
        "model.onnx", "model_quantized.onnx", "tokenizer.json", "tokenizer_config.json"
    }  # fmt: skip
    for path in (onnx_dir / "model.onnx", onnx_dir / "model_quantized.onnx"):
        props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
        metadata = json.loads(props["label_attention"])
        assert metadata["id2label"] == LABEL_NAMES and metadata["decision_thresholds"] == THRESHOLDS
        assert metadata["problem_type"] == "multi_label_classification" and metadata["max_length"] == 512
    single = OnnxTextClassificationPipeline.from_pretrained(single_label[2].output_dir)
    assert single.problem_type == "single_label_classification" and single.decision_thresholds is None
    assert single.input_names == ["input_ids", "attention_mask"]
    assert single_label[2].max_difference <= 1e-4 and single_label[2].quantized_path is None


@pytest.mark.parametrize("shape", [(1, 1), (1, 512), (2, 9), (5, 37), (16, 128)])
def test_same_logits_for_any_batch_size_and_length(multi_label, single_label, shape):
    """Dynamic axes: one graph, many shapes, the PyTorch logits to 1e-4 (padding included)."""
    import onnxruntime

    for onnx_dir, model, token_types in [
        (multi_label[0] / "onnx", multi_label[1], True),
        (single_label[2].output_dir, single_label[1], False),
    ]:
        session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        inputs = random_inputs(*shape, with_token_types=token_types, seed=sum(shape))
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        (logits,) = session.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})
        assert logits.shape == expected.shape
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


def test_quantized_model_runs_and_is_smaller(multi_label):
    folder, _ = multi_label
    fp32 = OnnxTextClassificationPipeline.from_pretrained(folder / "onnx", threads=1)
    int8 = OnnxTextClassificationPipeline.from_pretrained(folder / "onnx", file_name="model_quantized.onnx", threads=1)
    assert (folder / "onnx" / "model_quantized.onnx").stat().st_size < (folder / "onnx" / "model.onnx").stat().st_size
    logits, quantized = fp32.logits(TEXTS), int8.logits(TEXTS)
    assert quantized.shape == logits.shape and np.isfinite(quantized).all()
    assert np.abs(quantized - logits).max() < 0.05  # int8 weights: close, not equal


# ------------------------------------------------------------------------------- the pipeline stand-in


def test_pipeline_stand_in_multi_label(multi_label):
    folder, model = multi_label
    classifier = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    ours = OnnxTextClassificationPipeline.from_pretrained(folder, threads=1)  # the model folder: finds onnx/
    # Every calling convention of the text-classification pipeline, with its odd nesting.
    for args, kwargs in [
        ((TEXTS[0],), {}),
        ((TEXTS,), {}),
        ((TEXTS[0],), {"top_k": None}),
        ((TEXTS,), {"top_k": 2}),
        ((TEXTS,), {"top_k": None, "batch_size": 3}),
        ((TEXTS[1],), {"function_to_apply": "none", "top_k": None}),
        ((TEXTS[1],), {"function_to_apply": "softmax", "top_k": 1}),
        (({"text": TEXTS[0], "text_pair": TEXTS[1]},), {"top_k": None}),
        ((LONG_TEXT,), {"truncation": True, "top_k": None}),
    ]:
        assert_same_results(ours(*args, **kwargs), classifier(*args, **kwargs))
    assert ours([]) == []  # where transformers' pipeline raises an IndexError
    # Defaults given at construction, as `pipeline(..., top_k=None)` (the README's form).
    classifier_all = pipeline("text-classification", model=str(folder), trust_remote_code=True, top_k=None)
    ours_all = OnnxTextClassificationPipeline.from_pretrained(folder / "onnx", threads=1, top_k=None)
    for text in (TEXTS[0], TEXTS):
        assert_same_results(ours_all(text), classifier_all(text))
    # Decisions at the model's tuned thresholds, by the rule of `decisions_from_logits`.
    tokens = classifier.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model.predict_from_logits(model(**tokens).logits).numpy()
    np.testing.assert_array_equal(ours.predict(TEXTS), expected)


def test_pipeline_stand_in_single_label(single_label):
    folder, model, result = single_label
    classifier = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    ours = OnnxTextClassificationPipeline.from_pretrained(result.output_dir, threads=1)
    for args, kwargs in [
        ((TEXTS[0],), {}),
        ((TEXTS,), {"top_k": None}),
        ((TEXTS,), {"top_k": None, "batch_size": 4}),
        ((TEXTS[2],), {"function_to_apply": "sigmoid", "top_k": None}),
    ]:
        assert_same_results(ours(*args, **kwargs), classifier(*args, **kwargs))
    scores = ours(TEXTS, top_k=None)
    assert all(sum(item["score"] for item in result) == pytest.approx(1.0, abs=1e-5) for result in scores)
    tokens = classifier.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**tokens).logits.argmax(-1).numpy()
    np.testing.assert_array_equal(ours.predict(TEXTS), expected)


def test_pipeline_stand_in_refuses_too_long_inputs(multi_label):
    ours = OnnxTextClassificationPipeline.from_pretrained(multi_label[0] / "onnx", threads=1)
    with pytest.raises(ValueError, match="reads at most 512. Tokenise with truncation=True"):
        ours(LONG_TEXT)
    assert ours.logits([LONG_TEXT], truncation=True).shape == (1, 3)


WINDOW, LONGEST = 32, 100


def test_long_documents_graph(tmp_path, tokenizer):
    """A model that reads long documents in windows (window 32, up to 100 tokens, overlap 5): `--long-documents`
    exports the windowed path as model_long.onnx, and the pipeline stand-in picks the graph by length."""
    config = tiny_config("bert", max_document_length=LONGEST, document_window_overlap=5)
    config.encoder.max_position_embeddings = WINDOW
    torch.manual_seed(0)
    model = LabelAttentionForSequenceClassification(config)
    model.set_label_descriptions(tokenizer)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH, model_max_length=LONGEST)  # as from_encoder_pretrained
    folder = save(model, tokenizer, tmp_path / "model")
    assert main([str(folder), "--long-documents"]) == 0
    assert sorted(path.name for path in (folder / "onnx").glob("*.onnx")) == ["model.onnx", "model_long.onnx"]
    ours = OnnxTextClassificationPipeline.from_pretrained(folder, threads=1)
    assert (ours.max_length, ours.long_max_length) == (WINDOW, LONGEST)
    for seed, shape in enumerate([(1, 5), (2, WINDOW), (1, WINDOW + 1), (3, 64), (2, LONGEST)]):
        inputs = random_inputs(*shape, with_token_types=True, seed=seed)
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        np.testing.assert_allclose(ours._run({k: v.numpy() for k, v in inputs.items()}), expected, rtol=0, atol=1e-4)
    classifier = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    texts = ["Apoptosis.", " ".join(TEXTS), LONG_TEXT]  # one window, two to three windows, truncated to 100
    for kwargs in ({"top_k": None, "truncation": True}, {"top_k": None, "truncation": True, "batch_size": 3}):
        assert_same_results(ours(texts, **kwargs), classifier(texts, **kwargs))
    with pytest.raises(ValueError, match=f"reads at most {LONGEST}. Tokenise with truncation=True"):
        ours(LONG_TEXT)


# ------------------------------------------------------------------------------------------- bad input


def test_export_errors(tmp_path, tiny_encoder, multi_label, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "file.txt", "is a file"),
        (tmp_path / "empty", "holds no config.json"),
        (tiny_encoder, "is not a label-attention model (its config.json has model_type 'bert'"),
    ]
    for folder, message in cases:
        with pytest.raises(OnnxExportError, match=re.escape(message)):
            export_onnx(folder)
        assert main([str(folder)]) == 2
        err = capsys.readouterr().err
        assert "label-attention-export-onnx: error: " in err and message in err and "Traceback" not in err
    with pytest.raises(OnnxExportError, match="is a file; give a folder"):
        export_onnx(multi_label[0], tmp_path / "file.txt")
    with pytest.raises(OnnxExportError, match="holds no model.onnx: export the model first"):
        OnnxTextClassificationPipeline.from_pretrained(tmp_path / "empty")


def test_missing_onnx_packages_say_how_to_install(multi_label, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    assert main([str(multi_label[0]), "--output", str(tmp_path / "unused")]) == 2
    err = capsys.readouterr().err
    assert 'need onnxscript: pip install "label-attention[onnx]"' in err
    assert not (tmp_path / "unused").exists()


def test_failed_export_leaves_no_half_written_model(multi_label, tmp_path, monkeypatch):
    """The graph is written under a temporary name: a failure while writing leaves the previous model.onnx as it
    was, and no partial file."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.onnx").write_bytes(b"previous export")

    class HalfWritten:
        class model:
            metadata_props = {}

        def save(self, destination):
            Path(destination).write_bytes(b"half a graph")
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: HalfWritten())
    monkeypatch.setattr(onnx_export, "_strip_debug_metadata", lambda model: None)
    with pytest.raises(OSError, match="No space left"):
        export_onnx(multi_label[0], output)
    assert [path.name for path in output.iterdir()] == ["model.onnx"]
    assert (output / "model.onnx").read_bytes() == b"previous export"


# --------------------------------------------------------------------------------------------- benchmark


def test_onnx_speed_benchmark_runs_and_writes_its_table(multi_label, tmp_path):
    """Smoke test of benchmarks/onnx_speed.py on a handful of documents (no speed or quality figure is checked)."""
    folder, _ = multi_label
    documents = [(text, [LABEL_NAMES[i % 3]]) for i, text in enumerate(TEXTS * 2)]
    labels = {name: f"{name} description" for name in LABEL_NAMES}
    data = write_data_folder(tmp_path / "data", "multi_label_classification", labels, {"test": documents})
    output = tmp_path / "onnx_speed"
    completed = check_child(run_child([
        sys.executable, REPO / "benchmarks" / "onnx_speed.py", "--model-dir", folder, "--data-dir", data,
        "--reuse-export", "--max-length", 32, "--timing-documents", 4, "--repeats", 1, "--threads", 1,
        "--output", output,
    ], timeout=600))  # fmt: skip
    results = json.loads(output.with_suffix(".json").read_text())
    assert {row["runtime"] for row in results["speed"]} == {"pytorch", "onnxruntime-fp32", "onnxruntime-int8"}
    assert {row["batch_size"] for row in results["speed"]} == {1, 16}
    assert results["max_abs_logit_difference_fp32"] <= 1e-4
    assert set(results["metric"]) == {"pytorch", "onnxruntime-fp32", "onnxruntime-int8"}
    assert results["test_documents"] == len(documents)
    table = output.with_suffix(".md").read_text()
    assert "documents/s" in table and table in completed.stdout
