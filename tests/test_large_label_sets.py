"""Large label sets: descriptions encoded in slices, a sampled subset of them re-encoded per training step
(`trained_labels_per_step`), and the lighter block without the per-label feed-forward layer."""

import pytest
import torch
from tiny_models import LABEL_NAMES, tiny_config
from training_runs import keyword_args, read_json, train
from transformers import AutoModelForSequenceClassification

import label_attention.modeling_label_attention as modeling
from label_attention import LabelAttentionForSequenceClassification


def dropout_free_model(tokenizer, **kwargs):
    config = tiny_config(**kwargs)
    config.encoder.hidden_dropout_prob = config.encoder.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    model = LabelAttentionForSequenceClassification(config)
    model.set_label_descriptions(tokenizer)
    return model.eval()


def test_descriptions_encoded_in_slices_give_the_same_embeddings(tokenizer, monkeypatch):
    model = dropout_free_model(tokenizer)
    with torch.no_grad():
        whole = model.label_attention.encode_label_descriptions()
        monkeypatch.setattr(modeling, "LABEL_ENCODING_BATCH", 2)
        sliced = model.label_attention.encode_label_descriptions()
        some = model.label_attention.encode_label_descriptions(torch.tensor([2, 0]))
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(some, whole[[2, 0]], atol=1e-5, rtol=1e-5)


def test_only_the_sampled_descriptions_carry_gradients(tokenizer):
    model = dropout_free_model(tokenizer, trained_labels_per_step=1)
    base = model.label_attention
    with torch.no_grad():
        expected = base.encode_label_descriptions()
    model.train()
    torch.manual_seed(0)
    (sampled,) = torch.randperm(len(LABEL_NAMES))[:1].tolist()
    torch.manual_seed(0)
    embeddings = base.label_embeddings()
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)  # fresh and cached rows agree
    word_embeddings = base.encoder.embeddings.word_embeddings.weight
    direction = torch.randn(embeddings.shape[1])  # not the sum: a LayerNorm output sums to a constant
    for label in range(len(LABEL_NAMES)):
        output = (embeddings[label] * direction).sum()
        (gradient,) = torch.autograd.grad(output, word_embeddings, retain_graph=True, allow_unused=True)
        reaches_encoder = gradient is not None and bool(gradient.abs().sum() > 0)
        assert reaches_encoder == (label == sampled), label


def test_trained_labels_per_step_is_checked():
    with pytest.raises(ValueError, match="trained_labels_per_step must be at least 1"):
        tiny_config(trained_labels_per_step=0)


def test_lighter_block_has_no_feed_forward_and_round_trips(tokenizer, tmp_path):
    full, light = dropout_free_model(tokenizer), dropout_free_model(tokenizer, label_attention_feed_forward=False)
    assert any("feed_forward" in name for name in full.state_dict())
    assert not any("feed_forward" in name or "output_norm" in name for name in light.state_dict())
    assert sum(p.numel() for p in light.parameters()) < sum(p.numel() for p in full.parameters())
    light.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    inputs = {"input_ids": torch.randint(1000, 2000, (2, 12))}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, light(**inputs).logits)


def test_training_script_flags_for_large_label_sets(tiny_encoder, small_keywords, tmp_path):
    output_dir = tmp_path / "out"
    args = keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1, "--batch-size", 8,
                        "--trained-labels-per-step", 2, "--no-label-feed-forward")  # fmt: skip
    assert train(args) == 0
    config = read_json(output_dir / "model" / "config.json")
    assert config["trained_labels_per_step"] == 2 and config["label_attention_feed_forward"] is False


def test_large_label_set_benchmark_runs_and_writes_its_table(tiny_encoder, tmp_path, monkeypatch):
    """Smoke test (not a measure): the script runs every case on a handful of labels and writes its table."""
    import json

    from training_runs import import_benchmark

    script = import_benchmark("large_label_sets", monkeypatch)
    output = tmp_path / "large"
    script.main(["--encoder", str(tiny_encoder), "--num-labels", "6", "--sample", "2", "--batch-size", "2",
                 "--length", "16", "--steps", "1", "--warmup", "0", "--label-counts", "3,6",
                 "--output", str(output)])  # fmt: skip
    results = json.loads(output.with_suffix(".json").read_text())
    assert len(results["rows"]) == 7 and all(row["seconds_per_batch"] > 0 for row in results["rows"])
    assert [row["num_labels"] for row in results["by_num_labels"]] == [3, 6]
    assert results["by_num_labels"][0]["vanilla"]["ratio"] == 1.0
    table = output.with_suffix(".md").read_text()
    assert "2 descriptions re-encoded" in table and "Inference by number of labels" in table
    flops = [{name: row[name]["flops_per_document"] for name in row if name != "num_labels"}
             for row in results["by_num_labels"]]  # fmt: skip
    assert flops[0]["vanilla"] == pytest.approx(flops[1]["vanilla"], rel=0.01)  # the encoder, whatever the labels
    assert flops[1]["label attention"] > flops[0]["label attention"] > flops[0]["lighter block"] > flops[0]["vanilla"]
    assert "FLOPs per document" in table

    for row in results["by_num_labels"]:  # --flops-only adds them to a run's results, timings untouched
        for name in ("vanilla", "label attention", "lighter block"):
            del row[name]["flops_per_document"]
    output.with_suffix(".json").write_text(json.dumps(results))
    script.main(["--encoder", str(tiny_encoder), "--output", str(output), "--flops-only"])
    recounted = json.loads(output.with_suffix(".json").read_text())
    assert recounted["rows"] == results["rows"]
    assert recounted["by_num_labels"][1]["label attention"]["flops_per_document"] == flops[1]["label attention"]
    with pytest.raises(SystemExit):
        script.main(["--encoder", str(tiny_encoder), "--output", str(tmp_path / "none"), "--flops-only"])


def test_a_measurement_out_of_memory_is_reported_as_such(monkeypatch):
    from training_runs import import_benchmark

    script = import_benchmark("large_label_sets", monkeypatch)
    allocator = "RuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: ..."
    assert script.failure_reason("Traceback ...\n" + allocator, 1, 16.0) == "failed: out of memory under the 16 GiB cap"
    assert script.failure_reason("Traceback ...\nValueError: bad\n", 1, 16.0) == "failed: ValueError: bad"
    assert script.failure_reason("", -9, 16.0) == "failed: exit code -9"


@pytest.mark.parametrize("blocks", [1, 2])
def test_the_fast_attention_path_matches_the_one_returning_weights(make_model, tokenizer, blocks):
    """Without `output_attentions`, attention runs through `scaled_dot_product_attention`; with it, through an
    explicit softmax that keeps the weights: the same logits."""
    from tiny_models import DOCUMENTS, encode

    model = make_model(label_attention_blocks=blocks)
    batch = encode(tokenizer, DOCUMENTS)
    with torch.no_grad():
        fast, with_weights = model(**batch).logits, model(**batch, output_attentions=True).logits
    torch.testing.assert_close(fast, with_weights, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("output_attentions", [False, True])
def test_the_block_computes_multihead_attention_with_its_weights(make_model, output_attentions):
    """The block's attention, with queries shared by the batch projected once, is `nn.MultiheadAttention`'s own."""
    model = make_model()
    block, hidden = model.label_attention.blocks[0], model.config.hidden_size
    labels, documents = torch.randn(model.config.num_labels, hidden), torch.randn(3, 9, hidden)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 6:] = True
    with torch.no_grad():
        attended, weights = block._attend(labels, documents, padding, output_attentions)
        expected, expected_weights = block.attention(
            labels.expand(3, -1, -1), documents, documents, key_padding_mask=padding, average_attn_weights=False
        )
    torch.testing.assert_close(attended, expected, atol=1e-6, rtol=1e-5)
    if output_attentions:
        torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    else:
        assert weights is None


def test_centred_label_queries_leave_only_what_sets_a_label_apart(make_model, tokenizer):
    """With `label_query_centering`, a direction every label's query shares cannot move attention: labels that
    all have the same embedding attend uniformly; without it they do not."""
    from tiny_models import DOCUMENTS, encode

    batch = encode(tokenizer, DOCUMENTS)
    for centred in (False, True):
        model = make_model(label_query_centering=centred)
        base = model.label_attention
        same = base.label_embeddings()[:1].expand(model.config.num_labels, -1)  # every label: the first one's
        base.label_embeddings = lambda same=same: same
        with torch.no_grad():
            weights = model(**batch, output_attentions=True).attentions[0]
        real_tokens = batch["attention_mask"].sum(-1).view(-1, 1, 1, 1).float()
        uniform = torch.where(batch["attention_mask"][:, None, None, :].bool(), 1 / real_tokens, 0.0)
        assert torch.allclose(weights, uniform.expand_as(weights), atol=1e-6) == centred


def test_label_query_centering_needs_two_labels_and_is_a_training_flag(tiny_encoder, small_keywords, tmp_path):
    """So is the attention-overlap term of the loss (one run trains both)."""
    with pytest.raises(ValueError, match="label_query_centering needs at least 2 labels"):
        tiny_config(num_labels=1, label_query_centering=True)
    output_dir = tmp_path / "out"
    flags = ("--label-query-centering", "--label-attention-overlap-coef", "0.25")
    assert train(keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1, *flags)) == 0
    config = read_json(output_dir / "model" / "config.json")
    assert (config["label_query_centering"], config["label_attention_overlap_coef"]) == (True, 0.25)
