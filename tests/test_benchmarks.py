"""Smoke tests of the benchmark scripts, so that they cannot rot: each runs on a handful of documents for one step
with a tiny encoder. They check that the scripts run and write their tables, not any speed or quality figure."""

import functools
import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from training_runs import CHILD_ENV, REPO, run_child


@pytest.fixture
def run_main(capsys, monkeypatch):
    """`python benchmarks/NAME.py ARGS` as `NAME.main(ARGS)` in this process: what it printed to stdout, where it must
    succeed, or to stderr, where it must exit with `exit_code` (2: a usage error from its parser). The runs and
    measurements it starts still have their own processes, as for users; only the script's start-up (about ten seconds
    of imports on a slow CPU) is saved."""
    monkeypatch.chdir(REPO)
    for name in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):  # what the processes it starts see
        monkeypatch.setenv(name, CHILD_ENV[name])

    def call(name, *arguments, exit_code=0) -> str:
        capsys.readouterr()
        main, arguments = importlib.import_module(name).main, [str(argument) for argument in arguments]
        if exit_code == 0:
            assert main(arguments) == 0
            return capsys.readouterr().out
        with pytest.raises(SystemExit) as exited:
            main(arguments)
        assert exited.value.code == exit_code
        return capsys.readouterr().err

    return call


def test_speed_benchmark_runs_and_writes_its_table(run_main, tiny_encoder, tmp_path):
    output = tmp_path / "speed_0.1"  # writes speed_0.1.json: a dot in the name is not a suffix to replace
    run_main(
        "speed", "--encoder", tiny_encoder, "--batch-size", 2, "--length", 16,
        "--steps", 1, "--warmup", 0, "--label-counts", "3", "--lengths", "16", "--peak-size", 256, "--output", output,
        "--bf16", "always",  # on any CPU: where bf16 is emulated, the tiny encoder's one step is still quick
    )  # fmt: skip
    results = json.loads(Path(f"{output}.json").read_text())
    assert results["peak_flops_per_second"]["fp32"] > 0 and results["cpu"]
    for mode in ("train", "inference", "train_without_attention_dropout"):
        assert set(results[mode]) == {"linear", "label-attention"}
        for measured in results[mode].values():
            assert measured["flops_per_batch"] > 0 and 0 < measured["mfu"] <= 1
            assert measured["attn_implementation"] == "sdpa"
    assert results["overhead"]["train"] > 0 and results["overhead"]["inference"] > 0
    for head, measured in results["train_without_attention_dropout"].items():
        assert measured["flops_per_batch"] == results["train"][head]["flops_per_batch"]  # the same model's work
        assert measured["counted_flops_per_batch"] > 0 and measured["speedup"] > 0
    for head, measured in results["train_bf16"].items():
        assert measured["flops_per_batch"] == results["train"][head]["flops_per_batch"] and measured["speedup"] > 0
        assert (measured["mfu_bf16_peak"] is None) is not results["native_bf16"]
    assert [row["num_labels"] for row in results["by_num_labels"]] == [3]
    assert [row["length"] for row in results["by_length"]] == [16]
    assert "ratio to vanilla" in Path(f"{output}.md").read_text()
    assert "MFU" in Path(f"{output}.md").read_text()
    assert "attention dropout off" in Path(f"{output}.md").read_text()
    assert "Training under bf16 autocast" in Path(f"{output}.md").read_text()


@pytest.mark.parametrize(
    "script, flag, value",
    [("speed", "--lengths", "128,x"), ("large_label_sets", "--label-counts", "0"),
     ("long_documents", "--lengths", ""), ("compare_heads", "--seeds", "1;2")],
)  # fmt: skip
def test_lists_of_numbers_are_checked_by_the_parser(run_main, script, flag, value):
    """A bad list of numbers is a usage error that names the flag and the value, not a traceback."""
    arguments = ["benchmarks/configs/hoc.json", "--no-train"] if script == "compare_heads" else []
    stderr = run_main(script, *arguments, flag, value, exit_code=2)
    assert f"argument {flag}: expected comma-separated whole numbers from 1, got {value!r}" in stderr


HEAD_COMPARISONS = sorted(path for path in (REPO / "benchmarks" / "configs").glob("*.json")
                          if not path.name.startswith("zero_shot"))  # fmt: skip (zero_shot*.json: zero_shot.py's)


@pytest.fixture(scope="module")
def compare_heads():
    """benchmarks/compare_heads.py as a module, in this process (benchmarks/ is on pytest's pythonpath)."""
    return importlib.import_module("compare_heads")


@pytest.mark.parametrize("config_file", HEAD_COMPARISONS, ids=lambda path: path.stem)
def test_every_committed_head_comparison_config_loads(compare_heads, config_file):
    """The configs the README's figures come from still resolve: the experiments they name exist, and baselines
    borrowed through `baselines_from` trained with the same data and arguments (a later edit of either is caught)."""
    config = compare_heads.load_config(config_file)
    assert config["name"] == config_file.stem and config["heads"] and config["seeds"]


def test_older_records_test_rows_are_put_back_in_the_files_order(compare_heads, tiny_encoder, tmp_path):
    """Records made before predictions.npz kept the test file's order hold their rows sorted by token length; pairing
    documents across runs puts them back, and refuses rows in neither order."""
    config = {"data_dir": "../shared/data/hoc", "train_args": {"max_length": 512, "encoder": str(tiny_encoder)}}
    texts, gold = compare_heads.read_test_split(config["data_dir"])
    order = compare_heads.length_order(texts[:40], str(tiny_encoder), 512)
    assert order != sorted(order)  # abstracts of different lengths: the two orders differ
    logits = np.random.default_rng(0).normal(size=gold[:40].shape)
    np.savez(tmp_path / "predictions.npz", test_logits=logits[order], test_references=gold[:40][order])
    run = {"record": tmp_path, "train_args": {"max_eval_samples": 40}}
    put_back, references = compare_heads.predictions_on_test(config, run)
    assert np.array_equal(put_back, logits) and np.array_equal(references, gold[:40])
    np.savez(tmp_path / "predictions.npz", test_logits=logits, test_references=gold[:40][::-1])
    with pytest.raises(SystemExit, match="match neither the test file's order nor the order by length"):
        compare_heads.predictions_on_test(config, run)


@pytest.mark.parametrize("key", ["recipes_from", "baselines_from"])
def test_configs_naming_each_other_in_a_circle_are_refused(tmp_path, key):
    for name, source in (("first", "second"), ("second", "first")):
        config = {"data_dir": "../shared/data/hoc", "heads": ["linear"], "seeds": [1], key: source}
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
    command = [sys.executable, REPO / "benchmarks" / "compare_heads.py", tmp_path / "first.json", "--no-train"]
    completed = run_child(command)
    assert completed.returncode == 1 and "Traceback" not in completed.stderr
    assert f"{key} goes round in a circle: first -> second -> first" in completed.stderr


def test_zero_shot_protocol_refuses_a_config_without_the_shared_scorers_metric(run_main, small_keywords, tmp_path):
    """The default metric has changed before: a config that leaves it to the default would resume its protocol with
    runs unlike its records."""
    config = {"data_dir": str(small_keywords), "held_out": [["angiogenesis"]], "seeds": [1], "train_args": {}}
    (tmp_path / "unnamed_metric.json").write_text(json.dumps(config))
    stderr = run_main("zero_shot", tmp_path / "unnamed_metric.json", exit_code=2)
    assert "name the shared scorer's metric in the config" in stderr


def test_head_comparison_sweeps_runs_seeds_and_writes_its_tables(run_main, tiny_encoder, tmp_path):
    """Sweep on the first seed, the chosen setting on every seed, an ablation; records reused by a second call."""
    compare = functools.partial(run_main, "compare_heads")
    config = json.loads((REPO / "benchmarks" / "configs" / "hoc.json").read_text())
    data_dir = Path("..") / "shared" / "data" / "hoc"
    other_labels = json.loads((REPO / data_dir / "labels.json").read_text())
    for label in other_labels["labels"]:
        label["description"] = label["name"]
    other_labels_file = tmp_path / "labels_names_only.json"  # descriptions that are only the names
    other_labels_file.write_text(json.dumps(other_labels))
    config.update(
        heads=["label-attention", "mean-pooling"],
        seeds=[1, 2],
        sweep={"learning_rate": [1e-3, 2e-3]},
        ablations=[{"labels_file": str(other_labels_file)}],
        data_dir=str(data_dir),
    )
    config_file = tmp_path / "tiny_hoc.json"
    config_file.write_text(json.dumps(config))
    overrides = ["max_train_samples=8", "max_eval_samples=8", "epochs=2", "max_length=16", "batch_size=4",
                 f"encoder={tiny_encoder}", "label_attention_heads=4"]  # fmt: skip (hoc.json's 12 do not divide 32)
    output, records = tmp_path / "comparison", tmp_path / "records"
    command = [
        config_file, "--records-dir", records, "--runs-dir",
        tmp_path / "runs", "--output", output, "--jobs", 2, *[arg for item in overrides for arg in ("--override", item)],
    ]  # fmt: skip
    compare(*command)
    (experiment,) = json.loads(output.with_suffix(".json").read_text())
    assert experiment["experiment"] == "tiny_hoc"
    for head in ("label-attention", "mean-pooling"):
        row = experiment["heads"][head]
        assert len(row["sweep"]) == 2 and row["chosen"] in [score["setting"] for score in row["sweep"]]
        assert len(row["test_micro_f1"]["values"]) == 2 and len(row["learning_curves"]) == 2
        assert set(row["thresholds"]) == {"held_out_micro_f1_tuned", "held_out_micro_f1_at_0.5"}
        assert len(row["devices"]) == len(row["seeds"])  # per seed: the machine and the precision trained in
        assert all(device.endswith(", fp32") for device in row["devices"])
    difference = experiment["paired_differences"]["mean-pooling"]["micro_f1"]
    label_attention, baseline = (experiment["heads"][h]["test_micro_f1"]["values"] for h in ("label-attention", "mean-pooling"))
    assert difference["values"] == [a - b for a, b in zip(label_attention, baseline)]
    on_validation = experiment["paired_differences_validation"]["mean-pooling"]["micro_f1"]
    label_attention, baseline = (experiment["heads"][h]["validation_micro_f1"]["values"]
                                 for h in ("label-attention", "mean-pooling"))  # fmt: skip
    assert on_validation["values"] == [a - b for a, b in zip(label_attention, baseline)]
    resampled = difference["documents_resampled"]  # test documents resampled, pairs kept
    low, high = resampled["ci95"]
    assert low <= difference["mean"] <= high and 0 <= resampled["not_ahead"] <= 1
    assert "test documents resampled" in output.with_suffix(".md").read_text()
    # The table counts epochs from 1, as people do; the records keep train_log.jsonl's "epoch", from 0.
    table = output.with_suffix(".md").read_text().splitlines()
    (row,) = (line for line in table if line.startswith("| mean-pooling |"))
    best_epochs = experiment["heads"]["mean-pooling"]["best_epochs"]
    assert f"| 1 2 | {' '.join(str(epoch + 1) for epoch in best_epochs)} |" in row
    assert [ablation["change"] for ablation in experiment["ablations"]] == [{"labels_file": str(other_labels_file)}]
    (ablation_record,) = (records / "tiny_hoc" / "label-attention").glob("*labels_file=*/seed1")
    assert ablation_record.parent.name.startswith("labels_file=labels_names_only.json,")  # a file's name, not a path
    # Each finished run left its record; the model folders were not kept.
    assert len(list(records.rglob("eval_results.json"))) == 2 * 2 + 2 * 1 + 1
    assert not list((tmp_path / "runs").rglob("model.safetensors"))
    assert output.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "Paired differences" in output.with_suffix(".md").read_text()
    # A second call trains nothing: every record is reused.
    assert "done " not in compare(*command)
    # One head's further seed, without choosing anew: the sweep stays on the config's first seed.
    stdout = compare(*command, "--heads", "mean-pooling", "--seeds", "3")
    assert stdout.count("done ") == 1 and "done tiny_hoc/mean-pooling/" in stdout and "/seed3 " in stdout
    (added,) = json.loads(output.with_suffix(".json").read_text())
    assert list(added["heads"]) == ["mean-pooling"] and added["heads"]["mean-pooling"]["seeds"] == [1, 3]
    assert added["heads"]["mean-pooling"]["chosen"] == experiment["heads"]["mean-pooling"]["chosen"]
    assert added["ablations"] == [] and added["paired_differences"] == {}

    # A change to every head's chosen recipe, on every seed: the settings come from tiny_hoc's sweep, not a new one.
    # An option of label attention's only is not passed to a baseline (train_accelerate.py would refuse it).
    no_dropout = {**config["train_args"], "encoder_attention_dropout": 0.0, "label_query_centering": True}
    variant = {**config, "recipes_from": "tiny_hoc", "train_args": no_dropout}
    del variant["sweep"], variant["ablations"]
    variant_file = tmp_path / "tiny_hoc_variant.json"
    variant_file.write_text(json.dumps(variant))
    variant_command = [variant_file if part == config_file else part for part in command]
    stdout = compare(*variant_command)
    assert "done tiny_hoc/" not in stdout and stdout.count("done tiny_hoc_variant/") == 2 * 2
    (changed,) = json.loads(output.with_suffix(".json").read_text())
    assert changed["recipes_from"] == "tiny_hoc" and changed["sweep"] == config["sweep"]
    for head in ("label-attention", "mean-pooling"):
        assert changed["heads"][head]["chosen"] == experiment["heads"][head]["chosen"]
        assert changed["heads"][head]["sweep"] == experiment["heads"][head]["sweep"]
        # Paired with tiny_hoc's runs of the same head, setting and seed.
        for split in ("validation", "test"):
            after, before = (e["heads"][head][f"{split}_micro_f1"]["values"] for e in (changed, experiment))
            difference = changed["change_from_source"][head][split]["micro_f1"]
            assert difference["seeds"] == [1, 2] and difference["values"] == [a - b for a, b in zip(after, before)]
    for record in (records / "tiny_hoc_variant").rglob("eval_results.json"):
        train_args = json.loads(record.read_text())["train_args"]
        assert train_args["encoder_attention_dropout"] == 0.0
        assert ("label_query_centering" in train_args) == ("/label-attention/" in record.as_posix())
    assert "the one tiny_hoc's sweep chose" in output.with_suffix(".md").read_text()
    assert "this experiment minus tiny_hoc" in output.with_suffix(".md").read_text()
    # Summarising seeds not run yet trains nothing and reports no head.
    assert "done " not in compare(*variant_command, "--no-train", "--seeds", "3")
    assert json.loads(output.with_suffix(".json").read_text())[0]["heads"] == {}
    # A seed the source has no run of: nothing to pair it with, and the tables say nothing rather than "seeds []".
    stdout = compare(*variant_command, "--heads", "label-attention", "--seeds", "3")
    assert stdout.count("done tiny_hoc_variant/label-attention/") == 1
    (unpaired,) = json.loads(output.with_suffix(".json").read_text())
    assert unpaired["change_from_source"] == {} and unpaired["paired_differences"] == {}
    assert "seeds []" not in output.with_suffix(".md").read_text()

    # A change on top of the variant: tiny_hoc's choice, paired with the variant's runs; its baselines are the
    # variant's runs (the same arguments, label attention's own aside), read, not trained again.
    on_top = {**variant, "recipes_from": "tiny_hoc_variant", "baselines_from": "tiny_hoc_variant",
              "heads": ["label-attention"], "seeds": [1],
              "train_args": {**no_dropout, "no_label_feed_forward": True}}  # fmt: skip
    on_top_file = tmp_path / "tiny_hoc_on_top.json"
    on_top_file.write_text(json.dumps(on_top))
    stdout = compare(*[on_top_file if part == config_file else part for part in command])
    assert stdout.count("done ") == 1 and "done tiny_hoc_on_top/label-attention/" in stdout
    (stacked,) = json.loads(output.with_suffix(".json").read_text())
    assert stacked["heads"]["label-attention"]["chosen"] == experiment["heads"]["label-attention"]["chosen"]
    assert (stacked["recipes_from"], stacked["swept_by"]) == ("tiny_hoc_variant", "tiny_hoc")
    after, before = (e["heads"]["label-attention"]["test_micro_f1"]["values"][:1] for e in (stacked, changed))
    assert stacked["change_from_source"]["label-attention"]["test"]["micro_f1"]["values"] == [after[0] - before[0]]
    summary = output.with_suffix(".md").read_text()
    assert "the one tiny_hoc's sweep chose" in summary and "this experiment minus tiny_hoc_variant" in summary
    assert stacked["baselines_from"] == "tiny_hoc_variant" and "Baselines: tiny_hoc_variant's runs" in summary
    borrowed = stacked["heads"]["mean-pooling"]
    assert borrowed["experiment"] == "tiny_hoc_variant"
    assert borrowed["chosen"] == experiment["heads"]["mean-pooling"]["chosen"]
    assert borrowed["test_micro_f1"]["values"] == changed["heads"]["mean-pooling"]["test_micro_f1"]["values"][:1]
    difference = stacked["paired_differences"]["mean-pooling"]["micro_f1"]
    assert difference["values"] == [after[0] - borrowed["test_micro_f1"]["values"][0]] and difference["ci95"] is None
    assert "mean-pooling" not in stacked["change_from_source"]  # this config changed nothing of the baseline
    # Baselines trained otherwise are refused: the pairing would compare budgets, not heads.
    unfair_file = tmp_path / "tiny_hoc_unfair.json"
    unfair_file.write_text(json.dumps({**on_top, "train_args": {**on_top["train_args"], "epochs": 4}}))
    refused = r"baselines_from 'tiny_hoc_variant' trained otherwise \(epochs 3 there, 4 here\)"
    with pytest.raises(SystemExit, match=refused):  # exit code 1, this message and no traceback on the command line
        compare(*[unfair_file if part == config_file else part for part in command])


def test_ran_on_cell_says_which_seeds_ran_where(compare_heads):
    assert compare_heads.ran_on([1, 2], ["H100", "H100"]) == "H100"
    cell = compare_heads.ran_on([1, 2, 3], ["H100", "EPYC, fp32", "EPYC, fp32"])
    assert cell == "H100 (seed 1); EPYC, fp32 (seeds 2 3)"


def test_head_comparison_resumes_a_run_stopped_part_way(run_main, compare_heads, tiny_encoder, tmp_path, monkeypatch):
    """With --resume, a run stopped during its last epoch (as when a session ends) goes on from the epoch before, to
    the record the run would have left uninterrupted; the record names the code of both sittings."""
    train_args = {"max_train_samples": 8, "max_eval_samples": 8, "epochs": 2, "max_length": 16, "batch_size": 4,
                  "learning_rate": 1e-3, "head_learning_rate": 1e-3, "encoder": str(tiny_encoder)}  # fmt: skip
    config = {"data_dir": "../shared/data/hoc", "heads": ["mean-pooling"], "seeds": [1], "train_args": train_args}
    config_file, records, runs = tmp_path / "tiny_resumed.json", tmp_path / "records", tmp_path / "runs"
    config_file.write_text(json.dumps(config))
    command = ["compare_heads", config_file, "--records-dir", records, "--runs-dir", runs, "--output",
               tmp_path / "comparison", "--resume", "--keep-models"]  # fmt: skip
    run_main(*command)
    (record,) = (path.parent for path in records.rglob("eval_results.json"))
    run_dir = runs / record.relative_to(records)
    uninterrupted = json.loads((record / "eval_results.json").read_text())
    assert "resumed" not in uninterrupted
    first_commit = compare_heads.code_commit()
    assert uninterrupted["code_commits"] == ([first_commit] if first_commit else [])
    # Stopped during epoch 2: neither its record nor its checkpoint after epoch 2 was written.
    shutil.rmtree(record)
    shutil.rmtree(run_dir / "checkpoints" / "step_4")
    monkeypatch.setattr(compare_heads, "code_commit", lambda: "0123456789ab")  # the code changed in between
    assert "done tiny_resumed/mean-pooling/" in run_main(*command)
    resumed = json.loads((record / "eval_results.json").read_text())
    log = (run_dir / "run.log").read_text()  # both parts' output
    assert log.count("labels; train ") == 2 and f"Resuming from {run_dir / 'checkpoints' / 'step_2'}" in log
    epochs = [json.loads(line)["epoch"] for line in (record / "train_log.jsonl").read_text().splitlines()]
    assert resumed["resumed"] is True and epochs == [0, 1]
    assert resumed["wall_seconds"] > resumed["training_seconds_before_resume"] > 0  # the first sitting counts too
    assert resumed["code_commits"] == [*uninterrupted["code_commits"], "0123456789ab"]
    for split in ("validation", "test"):
        assert resumed[split] == uninterrupted[split], split


def test_zero_shot_protocol_trains_adds_scores_and_resumes(run_main, tiny_encoder, small_keywords, tmp_path):
    """Held-out sets trained without their labels, then scored with them added; the baseline and the upper bound; the
    whole task with either scorer, recorded under the config's name, the shared scorer's own arguments given to its
    runs only. A second call trains nothing, and takes a per-label record trained alike."""
    train_args = {"max_length": 32, "epochs": 1, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 3e-3,
                  "head_learning_rate": 3e-3, "encoder": str(tiny_encoder)}  # fmt: skip
    held_out = [["angiogenesis"], ["apoptosis", "inflammation"]]
    config = {"description": "tiny", "data_dir": str(small_keywords), "held_out": held_out, "seeds": [1],
              "shared_scorer": {"shared_scorer_metric": "identity"}, "train_args": train_args}  # fmt: skip
    config_file, output, records = tmp_path / "tiny_zero_shot.json", tmp_path / "summary", tmp_path / "records"
    config_file.write_text(json.dumps(config))
    command = ["zero_shot", config_file, "--records-dir", records, "--runs-dir", tmp_path / "runs", "--output", output]
    run_main(*command)
    summary = json.loads(output.with_suffix(".json").read_text())
    assert [row["label"] for row in summary["unseen_labels"]] == ["angiogenesis", "apoptosis", "inflammation"]
    for row in summary["unseen_labels"]:
        for method in ("zero_shot", "baseline", "trained"):
            assert 0 <= row[method]["roc_auc"]["mean"] <= 1 and 0 <= row[method]["f1"]["mean"] <= 1
    assert set(summary["averages"]) == {"zero_shot", "baseline", "trained"}
    assert 0 <= summary["averages"]["zero_shot"]["f1_calibrated"]["mean"] <= 1
    assert set(summary["validation_roc_auc"]) == {"zero_shot", "baseline"}
    for scored in records.rglob("zero_shot.json"):  # a threshold per new label, from the validation texts
        held = json.loads(scored.read_text())
        assert set(held["calibrated_thresholds"]) == set(held["held_out"])
        assert all(0 < threshold < 1 for threshold in held["calibrated_thresholds"].values())
        assert set(held["validation_roc_auc"]) == set(held["held_out"])
    assert set(summary["full_task"]) == {"shared", "per_label"}
    for row in summary["full_task"].values():  # per seed: the machine and the precision trained in
        assert len(row["devices"]) == len(summary["seeds"]) and row["devices"][0].endswith(", fp32")
    recorded = [path.parent.relative_to(records / config_file.stem) for path in records.rglob("eval_results.json")]
    shared = "shared,shared_scorer_metric=identity"
    assert sorted(path.as_posix() for path in recorded) == [
        f"{experiment}/label-attention/label_scorer={scorer}/seed1"
        for experiment, scorer in [("all-labels", "per_label"), ("all-labels", shared), ("angiogenesis", shared),
                                   ("apoptosis+inflammation", shared)]
    ]  # fmt: skip
    assert len(list(records.rglob("zero_shot.json"))) == 2 and not list((tmp_path / "runs").rglob("model.safetensors"))
    assert "Labels never trained on" in output.with_suffix(".md").read_text()

    reference = tmp_path / "comparison" / "seed1"
    reference.mkdir(parents=True)
    metrics = {"micro_f1": 0.125, "macro_f1": 0.25}
    (reference / "eval_results.json").write_text(
        json.dumps({"train_args": train_args, "test": metrics, "validation": metrics})
    )
    config_file.write_text(json.dumps({**config, "per_label_records": str(reference.parent)}))
    scored = next(records.rglob("zero_shot.json"))  # as scored before validation was: its model is gone, so kept
    unvalidated = {key: value for key, value in json.loads(scored.read_text()).items() if key != "validation_roc_auc"}
    scored.write_text(json.dumps(unvalidated))
    assert "done " not in run_main(*command)
    summary = json.loads(output.with_suffix(".json").read_text())
    assert summary["full_task"]["per_label"]["test_micro_f1"]["mean"] == 0.125
    assert set(summary["validation_roc_auc"]) == {"baseline"}
    # A config that names the blocks' heads as those runs had them (the former default) still takes that record.
    pinned = {**train_args, "label_attention_heads": 12}
    config_file.write_text(json.dumps({**config, "per_label_records": str(reference.parent), "train_args": pinned}))
    assert "done " not in run_main(*command)
    summary = json.loads(output.with_suffix(".json").read_text())
    assert summary["full_task"]["per_label"]["test_micro_f1"]["mean"] == 0.125
