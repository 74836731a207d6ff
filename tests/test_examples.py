"""The examples in `examples/`, run as a user would, on a folder saved by the training script."""

import json
import sys

from training_runs import DATA, REPO, check_child, run_child


def test_example_classifies_an_abstract_with_the_saved_folder(hoc_run):
    """The last step of the README's main command: `pipeline(..., trust_remote_code=True, top_k=None)`."""
    output_dir, _ = hoc_run
    completed = check_child(run_child([sys.executable, REPO / "examples" / "classify_abstract.py", output_dir / "model"]))
    score_lines = [line.split(maxsplit=1) for line in completed.stdout.splitlines() if line.startswith("  ")]
    labels = json.loads((DATA / "hoc" / "labels.json").read_text())["labels"]
    assert sorted(name for _, name in score_lines) == sorted(label["name"] for label in labels)
    assert all(0.0 <= float(score) <= 1.0 for score, _ in score_lines)
    assert "Gold labels:" in completed.stdout
