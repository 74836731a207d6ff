"""Run probe code in a fresh Python process that cannot import the `label_attention` package.

Loading tests must prove that a saved folder (or Hub snapshot) works on its own, through `trust_remote_code`, as it
would on a machine without this package. The probe therefore runs

* in a new interpreter, with its working directory outside the repository and the repository off `sys.path`;
* with an import hook that makes any import of `label_attention` fail loudly (the package is installed editable in
  the test environment, so without the hook a stray import would silently succeed);
* with `HF_MODULES_CACHE`, `HF_HOME` in a temporary folder, `HF_HUB_OFFLINE=1` and one torch thread.

The probe reports what it saw by calling `report(obj)` (JSON-serialisable); the test makes the assertions.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """\
import json, os, sys

_REPO = {repo!r}
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != _REPO]


class _BlockLabelAttention:
    def find_spec(self, name, path=None, target=None):
        if name == "label_attention" or name.startswith("label_attention."):
            raise ImportError("the fresh process must not import the label_attention package")
        return None


sys.meta_path.insert(0, _BlockLabelAttention())


def report(result):
    result["_process"] = {{
        "cwd": os.getcwd(),
        "repo_on_sys_path": any(os.path.realpath(p or os.getcwd()) == _REPO for p in sys.path),
        "label_attention_imported": any(m.split(".")[0] == "label_attention" for m in sys.modules),
    }}
    with open(os.environ["PROBE_RESULT"], "w") as f:
        json.dump(result, f)

"""


def run_fresh_python(code: str, workdir, env: dict[str, str] | None = None, timeout: float = 180) -> dict:
    """Run `code` (which must call `report(...)`) in a fresh interpreter with cwd `workdir`; return the report.

    `env` adds to (and overrides) the default environment described in the module docstring.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "probe.py"
    script.write_text(_PRELUDE.format(repo=str(REPO_ROOT.resolve())) + textwrap.dedent(code))
    result_file = workdir / "probe_result.json"
    process_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process_env.update(
        HF_HOME=str(workdir / "hf_home"),
        HF_MODULES_CACHE=str(workdir / "hf_modules"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",  # as in conftest.py: the test models are tiny
        TOKENIZERS_PARALLELISM="false",
        PROBE_RESULT=str(result_file),
    )
    process_env.update(env or {})
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=workdir, env=process_env, capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode != 0 or not result_file.exists():
        raise AssertionError(
            f"The fresh process failed (exit code {completed.returncode}).\n"
            f"--- stdout ---\n{completed.stdout[-4000:]}\n--- stderr ---\n{completed.stderr[-8000:]}"
        )
    result = json.loads(result_file.read_text())
    process = result.pop("_process")
    assert Path(process["cwd"]).resolve() == workdir.resolve(), "the fresh process ran outside its work folder"
    assert not process["repo_on_sys_path"], "the repository was on sys.path of the fresh process"
    assert not process["label_attention_imported"], "the fresh process imported label_attention"
    return result


_CHECKPOINT_PROBE = """
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

results = []
for case in json.load(open(os.environ["PROBE_CASES"])):
    source, seen = case["source"], {}
    config = AutoConfig.from_pretrained(source, trust_remote_code=True)
    seen["config_class"] = f"{type(config).__module__}.{type(config).__name__}"
    seen["label_descriptions"] = config.label_descriptions
    seen["id2label"] = {str(k): v for k, v in config.id2label.items()}
    inputs = {name: torch.tensor(value) for name, value in case["inputs"].items()}

    model, info = AutoModelForSequenceClassification.from_pretrained(
        source, trust_remote_code=True, output_loading_info=True
    )
    seen["model_class"] = f"{type(model).__module__}.{type(model).__name__}"
    seen["model_loading"] = {key: sorted(value) for key, value in info.items() if key != "error_msgs"}
    seen["model_training"] = model.training
    with torch.no_grad():
        seen["logits"] = model(**inputs).logits.tolist()

    base, info = AutoModel.from_pretrained(source, trust_remote_code=True, output_loading_info=True)
    seen["base_class"] = f"{type(base).__module__}.{type(base).__name__}"
    seen["base_loading"] = {key: sorted(value) for key, value in info.items() if key != "error_msgs"}
    with torch.no_grad():
        seen["base_last_hidden_state"] = base(**inputs).last_hidden_state.tolist()

    if case.get("pipeline_texts"):
        classifier = pipeline("text-classification", model=source, trust_remote_code=True, top_k=None)
        seen["pipeline"] = classifier(case["pipeline_texts"], truncation=True)
        try:  # longer than the encoder's positions: read in windows
            (seen["untruncated"],) = classifier(case["pipeline_texts"][-1:])
            seen["untruncated_error"] = None
        except Exception as error:
            seen["untruncated_error"] = [type(error).__name__, str(error)]
    results.append(seen)
report({"cases": results})
"""


def probe_checkpoints(cases: list[dict], workdir, env: dict[str, str] | None = None) -> list[dict]:
    """Load label-attention checkpoints in a fresh process (see `run_fresh_python`) and report what they do.

    Each case is a dict with `source` (a folder or a repo id), `inputs` (lists for `input_ids`, `attention_mask`, ...)
    and optionally `pipeline_texts` (the last one too long for the encoder). For each case the report holds the
    classes that AutoConfig, AutoModelForSequenceClassification and AutoModel load (with their loading info), the
    logits and the base model's `last_hidden_state` on `inputs`, and the `text-classification` pipeline's output
    (`top_k=None, truncation=True`) on the texts, and the error it raises on the last text without truncation.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases_file = workdir / "probe_cases.json"
    cases_file.write_text(json.dumps(cases))
    report = run_fresh_python(_CHECKPOINT_PROBE, workdir, env={**(env or {}), "PROBE_CASES": str(cases_file)})
    return report["cases"]
