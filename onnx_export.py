"""Export a saved label-attention classifier to ONNX, and classify with ONNX Runtime.

    label-attention-export-onnx outputs/hoc/model                # writes outputs/hoc/model/onnx/model.onnx
    label-attention-export-onnx outputs/hoc/model --quantize     # and model_quantized.onnx (dynamic int8)

```python
from label_attention.onnx_export import OnnxTextClassificationPipeline

classifier = OnnxTextClassificationPipeline.from_pretrained("outputs/hoc/model/onnx", top_k=None)
classifier("Tumour cells escape T-cell killing ...", truncation=True)  # what `pipeline(...)` returns
```

The exported graph encodes only the documents: the label embeddings (the label descriptions passed through the
encoder and pooled) are computed once, at export, and stored in the graph as a constant, exactly as the PyTorch model
caches them at inference. Its inputs are `input_ids`, `attention_mask` and, for encoders that take them,
`token_type_ids`, all `int64` of shape `(batch, sequence)` with both axes dynamic (the sequence up to the encoder's
window: 512 tokens for BERT-like encoders); its output is `logits`, shape `(batch, num_labels)`. Label names, problem
type, decision thresholds and the longest input read are stored in the ONNX file's metadata (`metadata_props`, key
`label_attention`, a JSON object), so a `model.onnx` is self-describing; the tokenizer is saved beside it.

A model that reads documents longer than its encoder's window in windows (`config.max_document_length`) gets that
path as a second graph with `--long-documents`: `model_long.onnx`, for inputs longer than the window (the pipeline
below picks the graph by length). Without it, the tokenizer saved beside `model.onnx` truncates to the window.

`optimum`'s ONNX Runtime classes (package `optimum-onnx`) require `transformers < 4.58` and cannot be installed beside
`transformers` 5, which this package needs; `OnnxTextClassificationPipeline` stands in for them: its input and output
are those of `transformers.pipeline("text-classification", model=..., trust_remote_code=True)` for the same model.

Needs the `onnx` extra: `pip install "label-attention[onnx]"` (onnx, onnxscript for the `torch.onnx` exporter,
onnxruntime).
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .modeling_label_attention import decisions_from_logits

MODEL_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
LONG_FILE = "model_long.onnx"
METADATA_KEY = "label_attention"
METADATA_FORMAT = 1
INSTALL_HINT = 'pip install "label-attention[onnx]"'
# Largest difference between ONNX Runtime's and PyTorch's logits accepted by the check after export.
DEFAULT_TOLERANCE = 1e-4


class OnnxExportError(ValueError):
    """Bad input to the export or the ONNX Runtime pipeline (missing folder, not a label-attention model, missing
    packages); the message says what to do."""


def _require(*modules: str):
    """Import the optional ONNX packages, or say how to install them."""
    import importlib

    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise OnnxExportError(f"ONNX export and inference need {', '.join(missing)}: {INSTALL_HINT}")


# ----------------------------------------------------------------------------------------------------- export


class LabelAttentionOnnxModule(nn.Module):
    """What is exported: a loaded classifier whose label embeddings are a constant buffer.

    `forward(input_ids, attention_mask, token_type_ids=None)` runs the classifier's own forward, with two changes
    while it runs: the label embeddings come from the buffer computed here, once, so the graph holds no description
    encoding; and the Python-side input checks are skipped (they test token-id values, which a traced graph cannot
    hold; the ONNX Runtime pipeline checks the length). Returns the logits.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        with torch.no_grad():
            embeddings = model.label_attention.label_embeddings().detach().clone()
        self.register_buffer("label_embeddings", embeddings)
        self.eval()

    def _label_embeddings(self):
        return self.label_embeddings

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        inner = self.model.label_attention
        # Instance attributes shadow the two methods of this model object, for this call only.
        inner.label_embeddings, inner._check_inputs = self._label_embeddings, _no_check
        try:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=False
            )[0]
        finally:
            del inner.label_embeddings, inner._check_inputs


def _no_check(*args, **kwargs):
    return None


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter (optional torchvision ops, constant-folding notes, axis renames)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=FutureWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@dataclass
class OnnxExport:
    """What `export_onnx` wrote: the folder, the ONNX files, the graph's input names, the longest input of
    `model.onnx` and of `model_long.onnx` (None: not exported), the longest document the PyTorch model reads (in
    windows, when longer than the encoder's window; None when it reads nothing longer than `max_length`), and per
    file the largest difference between ONNX Runtime's and PyTorch's logits found by the check."""

    output_dir: Path
    files: list[Path]
    input_names: list[str]
    max_length: int | None
    long_max_length: int | None
    windowed_length: int | None
    max_differences: dict[str, float]

    @property
    def model_path(self) -> Path:
        return self.output_dir / MODEL_FILE

    @property
    def quantized_path(self) -> Path | None:
        path = self.output_dir / QUANTIZED_FILE
        return path if path in self.files else None

    @property
    def max_difference(self) -> float | None:
        return self.max_differences.get(MODEL_FILE)


def _read_config(model_dir: Path) -> dict:
    if not model_dir.exists():
        raise OnnxExportError(f"Model folder {str(model_dir)!r} does not exist.")
    if not model_dir.is_dir():
        raise OnnxExportError(f"{str(model_dir)!r} is a file; pass the folder the model was saved to.")
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise OnnxExportError(f"{str(model_dir)!r} holds no config.json: it is not a saved model folder.")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise OnnxExportError(f"{config_file} cannot be read as JSON: {err}") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "label_attention":
        raise OnnxExportError(
            f"{str(model_dir)!r} is not a label-attention model (its config.json has model_type {model_type!r}, "
            "not 'label_attention')."
        )
    return config


def _load(model_dir: Path):
    """The classifier (fp32, eval mode) and tokenizer, as `pipeline(..., trust_remote_code=True)` loads them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, trust_remote_code=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    except (OSError, ValueError, KeyError) as err:
        raise OnnxExportError(f"Cannot load a model and tokenizer from {str(model_dir)!r}: {err}") from err
    if getattr(model.config, "model_type", None) != "label_attention" or not hasattr(model, "label_attention"):
        raise OnnxExportError(f"{str(model_dir)!r} did not load as a label-attention classifier.")
    return model.eval(), tokenizer


def _window_length(model) -> int | None:
    """Longest input the encoder reads at once (its absolute position embeddings; None for relative positions)."""
    return model.label_attention.window_length


def graph_max_length(model) -> int | None:
    """Longest input `model.onnx` reads: the encoder's window, and at most `config.max_document_length`.

    Documents longer than the encoder's window are read by the PyTorch model in windows (up to
    `config.max_document_length` tokens); `model.onnx` holds the single-window path only. `model_long.onnx`
    (`long_documents=True`) holds the windowed path."""
    limits = [limit for limit in (_window_length(model), getattr(model.config, "max_document_length", None)) if limit]
    return min(limits) if limits else None


def windowed_length(model) -> int | None:
    """Longest document the PyTorch model reads in windows, when longer than the encoder's window (else None)."""
    window, longest = _window_length(model), getattr(model.config, "max_document_length", None)
    if window and longest and longest > window:
        return longest
    return None


def long_file_name(file_name: str) -> str:
    """The windowed graph beside a graph: model.onnx -> model_long.onnx, model_quantized.onnx ->
    model_quantized_long.onnx."""
    return file_name.removesuffix(".onnx") + "_long.onnx"


@dataclass
class _Graph:
    """One exported graph: its file, the range of its sequence axis, an example length and the shapes checked."""

    file_name: str
    min_length: int | None
    max_length: int | None
    example_length: int
    check_shapes: list[tuple[int, int]]


def _graphs(model, long_documents: bool) -> list[_Graph]:
    short = graph_max_length(model)
    capped = short or 512
    graphs = [_Graph(MODEL_FILE, None, short, min(16, capped), [(1, min(7, capped)), (3, min(33, capped))])]
    longest = windowed_length(model)
    if long_documents and longest:
        # Lengths that span several windows (a guard on 0/1/2 windows would specialise the graph).
        example = min(longest, 2 * short + 3)
        shapes = [(1, short + 1), (2, min(longest, 2 * short + 5))]
        graphs.append(_Graph(LONG_FILE, short + 1, longest, example, shapes))
    return graphs


def _metadata(model, input_names, long_max_length) -> dict:
    config = model.config
    return {
        "format": METADATA_FORMAT,
        "id2label": [config.id2label[i] for i in range(config.num_labels)],
        "problem_type": config.problem_type,
        "decision_thresholds": config.decision_thresholds,
        "max_length": graph_max_length(model),
        "long_max_length": long_max_length,
        "windowed_length": windowed_length(model),
        "input_names": list(input_names),
        "encoder_model_type": config.encoder.model_type,
    }


def _example_inputs(model, input_names, batch_size, length, seed=0):
    """Random valid inputs: token ids in the vocabulary, the first row unpadded, the others padded at the end."""
    generator = torch.Generator().manual_seed(seed)
    vocab_size = model.label_attention.get_input_embeddings().num_embeddings
    input_ids = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    for row in range(1, batch_size):
        kept = int(torch.randint(1, length + 1, (1,), generator=generator))
        attention_mask[row, kept:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in input_names:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return inputs


class _DropMessages(logging.Filter):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in record.getMessage()


def _strip_debug_metadata(model):
    """Drop the exporter's per-node debug records (Python stack traces, FX nodes, module paths): they hold local
    file paths and add ~15 % to a small model's file."""
    graph = model.graph
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
    for node in graph.all_nodes():
        node.metadata_props.clear()
        values.extend(node.outputs)
    for value in values:
        value.metadata_props.clear()


def ort_session(path, threads=None, providers=None):
    """An ONNX Runtime session on `path` (CPU by default); `threads`: intra-op threads (None: ONNX Runtime's
    default, one per physical core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def _max_difference(model, session, input_names, shapes) -> float:
    """Largest |ONNX Runtime logit - PyTorch logit| over random inputs of the given (batch, length) shapes."""
    worst = 0.0
    for seed, (batch_size, length) in enumerate(shapes):
        inputs = _example_inputs(model, input_names, batch_size, length, seed=seed + 1)
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        got = session.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})[0]
        if got.shape != expected.shape:
            raise RuntimeError(f"The ONNX model returned logits of shape {got.shape}, expected {expected.shape}.")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def quantize_onnx(model_path, output_path):
    """Dynamic int8 quantisation (`onnxruntime.quantization.quantize_dynamic`) of the MatMul weights: signed int8,
    per output channel, 7-bit range (`reduce_range`, which avoids the saturation of the u8s8 kernels on CPUs without
    VNNI, AVX2 ones included). A product with a weight vector (the shared scorer's) stays in fp32: per-channel
    quantisation of a vector gives a graph ONNX Runtime cannot load. The metadata are kept."""
    _require("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_path, output_path = Path(model_path), Path(output_path)
    large = model_path.stat().st_size > 1_900_000_000 or any(model_path.parent.glob(model_path.name + "*.data"))
    source = onnx.load(str(model_path), load_external_data=False)
    weight_ranks = {weight.name: len(weight.dims) for weight in source.graph.initializer}
    vector_products = [
        node.name for node in source.graph.node if node.op_type == "MatMul" and weight_ranks.get(node.input[1]) == 1
    ]
    hint = _DropMessages("consider to run pre-processing before quantization")  # a generic hint, on the root logger
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(
            model_path,
            output_path,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=vector_products,
            use_external_data_format=large,
        )
    finally:
        logging.getLogger().removeFilter(hint)
    quantized = onnx.load(str(output_path), load_external_data=False)
    if not any(prop.key == METADATA_KEY for prop in quantized.metadata_props):
        quantized.metadata_props.extend(source.metadata_props)
        onnx.save(quantized, str(output_path))
    return output_path


def export_onnx(
    model_dir,
    output_dir=None,
    *,
    quantize: bool = False,
    long_documents: bool = False,
    opset_version: int | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> OnnxExport:
    """Export the saved label-attention classifier in `model_dir` to `output_dir/model.onnx` (default
    `model_dir/onnx`), with the tokenizer beside it; with `quantize=True` also `model_quantized.onnx`.

    The label embeddings are computed once and stored in the graph; the batch and sequence axes are dynamic, the
    sequence up to the encoder's window (512 tokens for BERT-like encoders). A model that reads longer documents in
    windows (`config.max_document_length`) has that path exported too with `long_documents=True`: `model_long.onnx`
    (and `model_quantized_long.onnx`), for inputs longer than the window; `OnnxTextClassificationPipeline` picks the
    graph by length. Without it, the tokenizer saved beside the graph truncates (`truncation=True`) to the window.

    With `check=True` (default) every graph is run with ONNX Runtime on random inputs and must give the PyTorch
    model's logits to within `tolerance` (RuntimeError otherwise); for the quantised graphs the difference is
    reported, not checked. Files are written under temporary names first and renamed into place, so no
    half-written `model.onnx` is ever left. Raises `OnnxExportError` for a missing folder, a folder that does not
    hold a label-attention model, or missing ONNX packages.
    """
    model_dir = Path(model_dir)
    _read_config(model_dir)
    _require("onnx", "onnxscript", "onnxruntime")
    output_dir = Path(output_dir) if output_dir is not None else model_dir / "onnx"
    if output_dir.exists() and not output_dir.is_dir():
        raise OnnxExportError(f"The output {str(output_dir)!r} is a file; give a folder.")
    model, tokenizer = _load(model_dir)

    module = LabelAttentionOnnxModule(model)
    input_names = ["input_ids", "attention_mask"]
    if model.label_attention.encoder_accepts_token_type_ids:
        input_names.append("token_type_ids")
    graphs = _graphs(model, long_documents)
    long_max_length = graphs[1].max_length if len(graphs) > 1 else None
    metadata = json.dumps(_metadata(model, input_names, long_max_length))

    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=output_dir))
    staged, differences = {}, {}
    try:
        for graph in graphs:
            example = _example_inputs(model, input_names, batch_size=2, length=graph.example_length)
            # Bounding the sequence axis keeps each graph on one path of the model (one window, or several).
            bounds = {"min": graph.min_length, "max": graph.max_length}
            sequence = torch.export.Dim("sequence", **{key: value for key, value in bounds.items() if value})
            dynamic_shapes = {name: {0: torch.export.Dim("batch"), 1: sequence} for name in input_names}
            with _quiet_exporter():
                program = torch.onnx.export(
                    module,
                    (),
                    kwargs=example,
                    input_names=input_names,
                    output_names=["logits"],
                    dynamic_shapes=dynamic_shapes,
                    opset_version=opset_version,
                    dynamo=True,
                    verbose=False,
                )
            _strip_debug_metadata(program.model)
            program.model.metadata_props[METADATA_KEY] = metadata
            path = staged[graph.file_name] = staging / graph.file_name
            program.save(path)
            del program
            if check:
                session = ort_session(path)
                differences[graph.file_name] = _max_difference(model, session, input_names, graph.check_shapes)
                if not differences[graph.file_name] <= tolerance:
                    raise RuntimeError(
                        f"The exported graph's logits ({graph.file_name}) differ from PyTorch's by "
                        f"{differences[graph.file_name]:.3g} (more than {tolerance:g}); nothing was written."
                    )
            if quantize:
                name = QUANTIZED_FILE if graph.file_name == MODEL_FILE else long_file_name(QUANTIZED_FILE)
                staged[name] = quantize_onnx(path, staging / name)
                if check:
                    differences[name] = _max_difference(model, ort_session(staged[name]), input_names,
                                                        graph.check_shapes)  # fmt: skip
        reads = long_max_length or graphs[0].max_length
        if reads is not None and not tokenizer.model_max_length <= reads:
            tokenizer.model_max_length = reads  # so that truncation=True keeps what the graphs read
        tokenizer.save_pretrained(staging / "tokenizer")

        # Into place: the tokenizer and any external-data files first, the .onnx files last, model.onnx the very
        # last (each rename is atomic).
        for path in sorted((staging / "tokenizer").iterdir()):
            os.replace(path, output_dir / path.name)
        for path in sorted(staging.iterdir()):
            if path.is_file() and path.name not in staged:
                os.replace(path, output_dir / path.name)
        for name in sorted(staged, key=lambda name: name == MODEL_FILE):
            os.replace(staged[name], output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OnnxExport(
        output_dir=output_dir,
        files=[output_dir / name for name in staged],
        input_names=input_names,
        max_length=graphs[0].max_length,
        long_max_length=long_max_length,
        windowed_length=windowed_length(model),
        max_differences=differences,
    )


# --------------------------------------------------------------------------------------------------- inference


def _sigmoid(outputs):
    return 1.0 / (1.0 + np.exp(-outputs))


def _softmax(outputs):
    maxes = np.max(outputs, axis=-1, keepdims=True)
    shifted_exp = np.exp(outputs - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


_FUNCTIONS = {"sigmoid": _sigmoid, "softmax": _softmax, "none": lambda outputs: outputs}
_UNSET = ""  # as in transformers' pipeline: `top_k=None` means "every label", so "not given" needs its own value


class OnnxTextClassificationPipeline:
    """A label-attention classifier exported by `export_onnx`, run with ONNX Runtime, with the input and output of
    `transformers.pipeline("text-classification", model=MODEL_DIR, trust_remote_code=True)` for the same model.

    `classifier(inputs, top_k=..., function_to_apply=..., batch_size=..., **tokenizer_kwargs)`:

    - `inputs`: a text, a `{"text": ..., "text_pair": ...}` dict, or a list of those;
    - `top_k`: not given -> the best label only, as `{"label", "score"}` (wrapped in a list for a single text);
      `None` -> every label, best first; an int -> that many labels, best first;
    - `function_to_apply`: `"sigmoid"`, `"softmax"` or `"none"`; by default sigmoid for multi-label models,
      softmax for single-label ones;
    - `batch_size` (default 1, as `pipeline`): documents per ONNX Runtime call, padded to the longest;
    - tokenizer keyword arguments, e.g. `truncation=True`, `max_length=256`.

    The same arguments given to the constructor (or `from_pretrained`) become defaults, as with `pipeline(...)`.
    Scores are those of the PyTorch pipeline to within float rounding. `logits(texts)` returns the raw logits,
    `predict(texts)` the decisions (`decisions_from_logits` at the model's thresholds).
    """

    def __init__(self, session, tokenizer, metadata: dict, long_session=None, **defaults):
        self.session = session
        self.long_session = long_session
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.id2label = dict(enumerate(metadata["id2label"]))
        self.problem_type = metadata["problem_type"]
        self.decision_thresholds = metadata.get("decision_thresholds")
        self.max_length = metadata.get("max_length")
        self.long_max_length = metadata.get("long_max_length") if long_session is not None else None
        self.input_names = [node.name for node in session.get_inputs()]
        self.defaults = defaults

    @classmethod
    def from_pretrained(cls, path, file_name: str = MODEL_FILE, threads: int | None = None, providers=None, **defaults):
        """Load from the folder `export_onnx` wrote (or a model folder holding `onnx/`), `file_name` being
        `model.onnx` or `model_quantized.onnx` (and its `_long` graph for long documents, when exported).
        `threads`: ONNX Runtime's intra-op threads (default: its own choice, one per physical core)."""
        _require("onnxruntime")
        from transformers import AutoTokenizer

        folder = Path(path)
        if not folder.is_dir():
            raise OnnxExportError(f"ONNX model folder {str(folder)!r} does not exist.")
        if not (folder / file_name).is_file() and (folder / "onnx" / file_name).is_file():
            folder = folder / "onnx"
        model_file = folder / file_name
        if not model_file.is_file():
            raise OnnxExportError(
                f"{str(folder)!r} holds no {file_name}: export the model first (label-attention-export-onnx MODEL_DIR)."
            )
        session = ort_session(model_file, threads=threads, providers=providers)
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise OnnxExportError(f"{model_file} was not exported by label-attention-export-onnx (no metadata).")
        metadata = json.loads(raw)
        long_session = None
        if metadata.get("long_max_length"):
            long_file = folder / long_file_name(file_name)
            if not long_file.is_file():
                raise OnnxExportError(
                    f"{model_file} was exported with a graph for long documents, {long_file.name}, which is missing "
                    "beside it: export the model again."
                )
            long_session = ort_session(long_file, threads=threads, providers=providers)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(session, tokenizer, metadata, long_session=long_session, **defaults)

    # The raw model.

    def _run(self, encoded: dict) -> np.ndarray:
        input_ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        length, session = input_ids.shape[1], self.session
        if self.max_length is not None and length > self.max_length:
            if self.long_session is None or length > self.long_max_length:
                limit = self.long_max_length or self.max_length
                hint = ""
                if self.long_session is None and self.metadata.get("windowed_length"):
                    hint = f", or export with --long-documents to read up to {self.metadata['windowed_length']}"
                raise ValueError(
                    f"The input has {length} tokens but the ONNX graph reads at most {limit}. Tokenise with "
                    f"truncation=True (pipeline: pass truncation=True){hint}."
                )
            session = self.long_session
        feed = {}
        for name in self.input_names:
            value = encoded.get(name)
            feed[name] = np.zeros_like(input_ids) if value is None else np.asarray(value, dtype=np.int64)
        return session.run(["logits"], feed)[0]

    def logits(self, texts, batch_size: int = 16, **tokenizer_kwargs) -> np.ndarray:
        """Logits `(len(texts), num_labels)`, float32, for a list of texts, tokenised in padded batches."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        outputs = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(texts[start : start + batch_size], padding=True, return_tensors="np",
                                     **tokenizer_kwargs)  # fmt: skip
            outputs.append(self._run(encoded))
        if not outputs:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        return np.concatenate(outputs)

    def predict(self, texts, batch_size: int = 16, **tokenizer_kwargs) -> np.ndarray:
        """Decisions: multi-hot `(n, num_labels)` at the model's thresholds (multi-label), class ids `(n,)`
        (single-label); the rule of `decisions_from_logits`."""
        logits = torch.from_numpy(self.logits(texts, batch_size=batch_size, **tokenizer_kwargs))
        return decisions_from_logits(logits, self.problem_type, self.decision_thresholds).numpy()

    # The pipeline.

    def _postprocess(self, logits, function_to_apply, top_k, legacy):
        if function_to_apply is None:
            if self.problem_type == "multi_label_classification" or len(self.id2label) == 1:
                function_to_apply = "sigmoid"
            else:
                function_to_apply = "softmax"
        name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
        if name not in _FUNCTIONS:
            raise ValueError(f"Unrecognized `function_to_apply` argument: {function_to_apply}")
        scores = _FUNCTIONS[name](logits.astype(np.float32))
        if top_k == 1 and legacy:
            return {"label": self.id2label[scores.argmax().item()], "score": scores.max().item()}
        results = [{"label": self.id2label[i], "score": score.item()} for i, score in enumerate(scores)]
        if not legacy:
            results.sort(key=lambda result: result["score"], reverse=True)
            if top_k is not None:
                results = results[:top_k]
        return results

    def _tokenize(self, item, tokenizer_kwargs):
        if isinstance(item, dict):
            return self.tokenizer(**item, **tokenizer_kwargs)
        if isinstance(item, str):
            return self.tokenizer(item, **tokenizer_kwargs)
        raise ValueError(
            f"Inputs must be texts or {{'text': ..., 'text_pair': ...}} dicts, got {type(item).__name__}."
        )

    def __call__(self, inputs, **kwargs):
        legacy_call = "top_k" not in kwargs
        kwargs = {**self.defaults, **kwargs}
        top_k = kwargs.pop("top_k", _UNSET)
        function_to_apply = kwargs.pop("function_to_apply", None)
        batch_size = kwargs.pop("batch_size", 1) or 1
        legacy = not (isinstance(top_k, int) or top_k is None)
        if legacy:
            top_k = 1
        items = inputs if isinstance(inputs, list) else [inputs]
        results = []
        for start in range(0, len(items), batch_size):
            encoded = [self._tokenize(item, kwargs) for item in items[start : start + batch_size]]
            padded = self.tokenizer.pad(encoded, padding=True, return_tensors="np")
            for row in self._run(padded):
                results.append(self._postprocess(row, function_to_apply, top_k, legacy))
        if not isinstance(inputs, list):
            results = results[0]
            if isinstance(inputs, str) and legacy_call:
                return [results]  # as transformers' pipeline does for a single text
        return results


# ------------------------------------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="label-attention-export-onnx",
        description="Export a saved label-attention classifier to ONNX (model.onnx, dynamic batch and sequence "
        "axes, label embeddings computed once and stored in the graph) and check it with ONNX Runtime.",
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder the model was saved to (e.g. outputs/hoc/model)")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help="where to write model.onnx and the tokenizer (default MODEL_DIR/onnx)")
    parser.add_argument("--quantize", action="store_true",
                        help="also write model_quantized.onnx (dynamic int8 quantisation of the weights)")
    parser.add_argument("--long-documents", action="store_true",
                        help="also write model_long.onnx, the path for documents longer than the encoder's window "
                        "(read in windows, up to config.max_document_length tokens); doubles the disk size")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the torch exporter's)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the exported graph with ONNX Runtime against PyTorch")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input, 1 failed export)."""
    args = _parser().parse_args(argv)
    prog = "label-attention-export-onnx"
    try:
        result = export_onnx(args.model_dir, args.output, quantize=args.quantize, long_documents=args.long_documents,
                             opset_version=args.opset, check=not args.no_check)  # fmt: skip
    except OnnxExportError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"{prog}: export failed: {err}", file=sys.stderr)
        return 1
    for path in result.files:
        difference = result.max_differences.get(path.name)
        checked = f"; max |logit difference| from PyTorch {difference:.2e}" if difference is not None else ""
        print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB{checked})")
    lengths = f"sequence <= {result.max_length}" if result.max_length else "sequence"
    if result.long_max_length:
        lengths += f"; {result.max_length} < sequence <= {result.long_max_length} in the _long graphs"
    print(f"Inputs: {', '.join(result.input_names)} (batch, {lengths}); output: logits (batch, num_labels)")
    if result.windowed_length and not result.long_max_length:
        print(f"Note: the model reads documents of up to {result.windowed_length} tokens, in windows of "
              f"{result.max_length}; the ONNX graph reads the first {result.max_length} (its tokenizer truncates "
              "there). Export with --long-documents to read longer documents in windows too.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
