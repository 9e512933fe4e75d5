"""Fine-tuning from sparse annotations: sample building, held-out split, the job end to end."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_instseg.core.arrays import InputError
from napari_instseg.core.data.sparse import (
    BACKGROUND_LABEL,
    annotation_counts,
    annotation_to_labels,
    copy_objects,
    next_object_id,
    split_objects,
)
from napari_instseg.core.metrics import average_precision_annotated


def test_annotation_ids_and_counts():
    a = np.zeros((6, 6), np.uint32)
    a[0, :2] = 4
    a[5, 5] = BACKGROUND_LABEL
    a[2:4, 2:4] = 7
    labels, known = annotation_to_labels(a)
    assert set(np.unique(labels)) == {0, 4, 7}
    assert known.sum() == 2 + 1 + 4 and known[5, 5] and labels[5, 5] == 0
    assert annotation_counts(a) == {"objects": 2, "object_pixels": 6, "background_pixels": 1}
    assert next_object_id(a) == 8
    assert next_object_id(np.full((2, 2), BACKGROUND_LABEL - 1)) == BACKGROUND_LABEL + 1
    with pytest.raises(InputError, match="no objects"):
        annotation_to_labels(np.where(a == BACKGROUND_LABEL, a, 0))


def test_copy_objects_never_overwrites_user_paint():
    ann = np.zeros((4, 4), np.uint32)
    ann[0, 0] = BACKGROUND_LABEL
    ann[3, 3] = 1
    pred = np.zeros((4, 4), np.uint32)
    pred[:2, :2] = 5
    pred[2:, 2:] = 6
    new, added = copy_objects(ann, pred, [5, 6, 99])
    assert added == [2, 3]
    assert new[0, 0] == BACKGROUND_LABEL and new[3, 3] == 1
    assert (new[:2, :2][1:, :] == 2).all() and new[2, 2] == 3
    with pytest.raises(InputError, match="shape"):
        copy_objects(ann, pred[:3], [5])


def test_split_objects_keeps_at_least_one():
    labels = np.arange(10).reshape(2, 5)
    kept, held = split_objects(labels, 0.3, rng=np.random.default_rng(0))
    assert held.size == 3 and kept.size == 6 and not set(kept) & set(held)
    kept, held = split_objects(np.array([[0, 1]]), 0.5, rng=np.random.default_rng(0))
    assert kept.tolist() == [1] and held.size == 0


def test_annotated_ap_ignores_predictions_away_from_annotations():
    truth = np.zeros((10, 10), int)
    truth[:3, :3] = 1
    pred = np.zeros((10, 10), int)
    pred[:3, :3] = 4
    pred[6:, 6:] = 5  # an unannotated object: neither right nor wrong
    assert average_precision_annotated(truth, pred, iou_threshold=0.5) == 1.0
    merged = pred.copy()
    merged[:3, :8] = 4  # merged with an unannotated neighbour: IoU 9/24
    assert average_precision_annotated(truth, merged, iou_threshold=0.5) == 0.0


@pytest.fixture
def spoco_tiny(tmp_path, save_tiny_spoco):
    from napari_instseg.core.checkpoint import load_model
    from napari_instseg.core.pipeline import Model

    path = save_tiny_spoco(
        tmp_path / "zoo", backend_config={"bandwidth": 0.9}, training={"data": "nothing"}
    )
    return Model.from_card(*load_model(path))


def _annotated(disks, seed=0):
    from napari_instseg.core.finetune import AnnotatedImage

    truth = disks(seed, (64, 64))
    rng = np.random.default_rng(seed)
    image = (truth > 0) + 0.1 * rng.standard_normal(truth.shape)
    annotation = np.where(np.isin(truth, [1, 2, 3, 4, 5]), truth, 0).astype(np.uint32)
    annotation[:4, :4] = BACKGROUND_LABEL
    return AnnotatedImage(f"disks{seed}", image.astype(np.float32), annotation)


def test_finetune_samples_hide_held_out_objects(spoco_tiny, disks):
    from napari_instseg.core.finetune import make_finetune_samples

    item = _annotated(disks)
    train, val, record = make_finetune_samples(
        spoco_tiny, [item], held_out_fraction=0.4, rng=np.random.default_rng(0)
    )
    held = np.unique(val[0].labels[val[0].labels > 0])
    assert held.size == 2 and record[0]["held_out_objects"] == 2 and record[0]["objects"] == 5
    assert not np.isin(train[0].labels, held).any()
    assert not train[0].known[np.isin(item.annotation, held)].any()  # hidden, not background
    assert train[0].known[:4, :4].all() and not val[0].known.all()
    bad = type(item)("bad", item.image, item.annotation[:10])
    with pytest.raises(InputError, match="does not match"):
        make_finetune_samples(spoco_tiny, [bad], held_out_fraction=0.0, rng=np.random.default_rng())


def test_held_out_objects_are_scored_on_a_crop_around_them(spoco_tiny, disks):
    from napari_instseg.core.finetune import (
        HELD_OUT_MARGIN,
        AnnotatedImage,
        make_finetune_samples,
    )

    truth = np.zeros((300, 300), np.uint32)
    truth[:64, :64] = disks(0, (64, 64))  # the annotated objects sit in one corner
    annotation = np.where((truth > 0) & (truth <= 6), truth, 0).astype(np.uint32)
    image = (truth > 0).astype(np.float32)
    _, val, record = make_finetune_samples(
        spoco_tiny,
        [AnnotatedImage("corner", image, annotation)],
        held_out_fraction=0.5,
        rng=np.random.default_rng(0),
    )
    held = np.isin(truth, np.unique(val[0].labels[val[0].labels > 0]))
    rows, cols = np.nonzero(held)
    assert val[0].labels.shape == (
        min(300, rows.max() + 1 + HELD_OUT_MARGIN),
        min(300, cols.max() + 1 + HELD_OUT_MARGIN),
    )  # not the whole 300 x 300 image
    assert (val[0].labels > 0).sum() == held.sum()  # every held-out pixel inside the crop
    assert val[0].image.shape[1:] == val[0].labels.shape


def test_finetune_job_publishes_model_with_lineage_and_resumes(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import FinetuneConfig, annotation_sha256, finetune
    from napari_instseg.core.jobs import Metric, Preview, Stop
    from napari_instseg.core.zoo import list_models

    data = [_annotated(disks, 0), _annotated(disks, 1)]
    config = FinetuneConfig(
        iterations=10, batch_size=2, patch_size=32, val_every=5, preview_every=5, device="cpu"
    )
    job = finetune(
        spoco_tiny,
        data,
        name="mine",
        run_dir=tmp_path / "run",
        models_dir=tmp_path / "models",
        config=config,
        preview=data[0].image,
    )
    events = []
    event = next(job)
    try:
        while True:
            events.append(event)
            # Stop once the first validation happened: the run must keep its checkpoints.
            stop = isinstance(event, Metric) and event.name == "val_ap50"
            event = job.send(Stop() if stop else None)
    except StopIteration as done:
        result = done.value
    names = [e.name for e in events if isinstance(e, Metric)]
    assert names[0] == "heldout_ap50_before" and "loss" in names and "val_ap50" in names
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and previews[0].data.shape == (64, 64)
    assert result.run.stopped and result.run.iterations_done == 5
    card = read_card(result.model_path)
    assert card.name == "mine" and card.parent == "spoco-tiny"
    assert card.backend_config == {"bandwidth": 0.9}
    hashes = [a["annotation_sha256"] for a in card.training["annotations"]]
    assert hashes == [annotation_sha256(d.annotation) for d in data]
    assert card.metrics["heldout_ap50"] == result.heldout_after
    assert card.metrics["stopped_early"] is True
    assert "mine" in [c.name for c, _ in list_models([tmp_path / "models"])]

    from napari_instseg.core.jobs import run

    resumed = run(
        finetune(
            spoco_tiny,
            data,
            name="mine",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
            resume=True,
        )
    )
    assert not resumed.run.stopped and resumed.run.iterations_done == 10
    assert len(resumed.run.history["loss"]) > len(result.run.history["loss"])


def test_finetune_refuses_dense_only_methods(tiny_model, disks, tmp_path):
    from napari_instseg.core.finetune import finetune
    from napari_instseg.core.pipeline import load_model

    card_path, _ = tiny_model
    model = load_model(str(card_path))
    with pytest.raises(InputError, match="sparse"):
        next(finetune(model, [_annotated(disks)], name="x", run_dir=tmp_path / "r"))


def test_a_preview_that_does_not_fit_is_a_warning_not_a_failure(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    config = FinetuneConfig(iterations=2, batch_size=1, patch_size=32, held_out_fraction=0.0)
    result = run(
        finetune(
            spoco_tiny,
            [_annotated(disks)],
            name="p",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
            preview=np.zeros((3, 4, 64, 64), np.float32),  # 4D: no 2D model can take it
        )
    )
    assert result.model_path is not None
    assert any(w.startswith("no preview") for w in result.warnings)


def test_anchor_keeps_unannotated_outputs_near_the_parent(spoco_tiny, disks, tmp_path):
    import torch

    from napari_instseg.core.checkpoint import load_model
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import prepare_image

    item = _annotated(disks)
    x = torch.from_numpy(prepare_image(spoco_tiny, item.image))[None]
    unknown = torch.from_numpy(item.annotation == 0)
    with torch.no_grad():
        parent = spoco_tiny.net.f(x)["embedding"][0][:, unknown]

    def drift(weight):
        config = FinetuneConfig(
            iterations=15, lr=5e-3, batch_size=2, patch_size=32, held_out_fraction=0.0,
            anchor_weight=weight, device="cpu",
        )  # fmt: skip
        out = tmp_path / f"w{weight}"
        result = run(finetune(spoco_tiny, [item], name="a", run_dir=out / "run",
                              models_dir=out, config=config))  # fmt: skip
        _, net = load_model(result.model_path)
        with torch.no_grad():
            return float((net.f(x)["embedding"][0][:, unknown] - parent).abs().mean())

    assert drift(50.0) < 0.5 * drift(0.0)


def test_affinity_models_fine_tune_from_sparse_annotations(disks, tmp_path, save_tiny_affinity):
    """The affinity method learns from sparse labels too: a tiny model fine-tunes with the
    anchor on, validates held-out objects with its mutex watershed and publishes."""
    from napari_instseg.core.checkpoint import load_model, read_card
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import Model

    path = save_tiny_affinity(tmp_path / "zoo", backend_config={"min_size": 5})
    model = Model.from_card(*load_model(path))
    config = FinetuneConfig(
        iterations=4, batch_size=2, patch_size=32, val_every=2, held_out_fraction=0.4,
        anchor_weight=1.0,
    )  # fmt: skip
    result = run(
        finetune(
            model,
            [_annotated(disks, 0)],
            name="aff",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
        )
    )
    saved = read_card(result.model_path)
    assert saved.method == "affinity" and saved.parent == "affinity-tiny"
    assert saved.backend == "mutex_watershed" and saved.backend_config == {"min_size": 5}
    assert 0.0 <= result.heldout_after <= 1.0


def test_patchperpix_fine_tunes_with_the_anchor_on(disks, tmp_path, save_tiny_patchperpix):
    """The anchor term compares maps only: PatchPerPix's outputs also carry its decoder's
    weights, which must not break it."""
    from napari_instseg.core.checkpoint import load_model, read_card
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import Model

    path = save_tiny_patchperpix(tmp_path / "zoo", backend_config={"min_size": 5})
    model = Model.from_card(*load_model(path))
    config = FinetuneConfig(
        iterations=4, batch_size=2, patch_size=32, val_every=2, held_out_fraction=0.4,
        anchor_weight=1.0,
    )  # fmt: skip
    result = run(
        finetune(
            model,
            [_annotated(disks, 0)],
            name="ppp",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
        )
    )
    saved = read_card(result.model_path)
    assert saved.method == "patchperpix" and saved.parent == "patchperpix-tiny"
    assert 0.0 <= result.heldout_after <= 1.0


def test_reference_objects_keep_the_users_and_the_parents_away_from_them():
    from napari_instseg.core.finetune import reference_objects

    annotated = np.zeros((10, 20), np.uint32)
    annotated[2:6, 2:6] = 1
    parent = np.zeros_like(annotated)
    parent[2:6, 3:7] = 5  # the parent's version of the annotated object
    parent[2:6, 7:9] = 6  # 2 px from it: the user saw it, maybe a wrong neighbour
    parent[2:6, 14:18] = 7  # far away: left as the parent had it
    ref = reference_objects(annotated, parent)
    assert (ref[annotated == 1] == 1).all()
    assert (ref[parent == 6] == 0).all()
    far = np.unique(ref[parent == 7])
    assert far.size == 1 and far[0] > 1
    assert set(np.unique(ref)) == {0, 1, int(far[0])}


def test_merge_distance_is_chosen_to_keep_objects_whole_and_apart():
    """Two pieces of one object (means 0.8 apart) touch a neighbour 2.2 further on: a
    merge distance between them gives both reference objects whole, 0 splits the object,
    the parent's 4 merges it with the neighbour."""
    from napari_instseg.core.finetune import choose_merge_distance

    emb = np.zeros((2, 24, 40), np.float32)
    ref = np.zeros((24, 40), np.int64)
    ref[2:22, 2:22], ref[2:22, 22:38] = 1, 2
    emb[0, 2:22, 12:22] = 0.8  # the object's second piece
    emb[0, 2:22, 22:38] = 3.0  # the neighbour
    fg = (ref > 0).astype(np.float32)
    knobs = {"bandwidth": 0.4, "merge_distance": 4.0, "min_size": 10}
    decoded = [{"pixel_embedding": emb, "foreground": fg}]
    chosen, scores = choose_merge_distance("meanshift", knobs, decoded, [ref])
    assert chosen == 2.0  # of the perfect 1.0, 1.5 and 2.0, the closest to the parent's
    assert scores[2.0] == pytest.approx(1.0)
    assert scores[0.0] < 0.9 and scores[4.0] < 0.9
    # a margin larger than the gain keeps the parent's value; a smaller one does not
    gain = scores[2.0] - scores[4.0]
    assert choose_merge_distance("meanshift", knobs, decoded, [ref], margin=gain + 0.01)[0] == 4.0
    assert choose_merge_distance("meanshift", knobs, decoded, [ref], margin=gain - 0.01)[0] == 2.0


def test_finetune_publishes_a_refitted_merge_distance(spoco_tiny, disks, tmp_path):
    from dataclasses import replace

    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    knobs = {"bandwidth": 0.9, "merge_distance": 2.0}
    parent = replace(spoco_tiny, card=replace(spoco_tiny.card, backend_config=knobs))
    cards = {}
    for refit in (True, False):
        config = FinetuneConfig(
            iterations=4, batch_size=2, patch_size=32, held_out_fraction=0.0, refit_knobs=refit,
            device="cpu",
        )  # fmt: skip
        out = tmp_path / str(refit)
        result = run(finetune(parent, [_annotated(disks)], name="m", run_dir=out / "run",
                              models_dir=out, config=config))  # fmt: skip
        cards[refit] = (read_card(result.model_path), result)
    card, result = cards[True]
    fit = card.metrics["knob_refit"]["merge_distance"]
    assert fit["parent"] == 2.0 and result.refit == card.metrics["knob_refit"]
    assert card.backend_config["merge_distance"] == fit["chosen"]
    assert str(fit["chosen"]) in fit["mean_best_iou"] and len(fit["mean_best_iou"]) == 9
    assert fit["mean_best_iou"][str(fit["chosen"])] == max(fit["mean_best_iou"].values())
    assert fit["on"] == "annotations"
    card, result = cards[False]
    assert card.backend_config == knobs and "knob_refit" not in card.metrics
    assert result.refit is None


def test_merge_distance_can_be_rechosen_on_the_held_out_objects(spoco_tiny, disks, tmp_path):
    from dataclasses import replace

    from napari_instseg.core.finetune import MIN_HELD_OUT_OBJECTS, FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    parent = replace(
        spoco_tiny,
        card=replace(spoco_tiny.card, backend_config={"bandwidth": 0.9, "merge_distance": 2.0}),
    )
    data = [_annotated(disks, seed) for seed in range(3)]
    for fraction, judged in ((0.6, True), (0.2, False)):
        config = FinetuneConfig(
            iterations=2, batch_size=2, patch_size=32, held_out_fraction=fraction,
            refit_on="held-out", compare_parent=False, device="cpu",
        )  # fmt: skip
        out = tmp_path / str(fraction)
        result = run(finetune(parent, data, name="m", run_dir=out / "run", models_dir=out,
                              config=config))  # fmt: skip
        assert (result.heldout_objects >= MIN_HELD_OUT_OBJECTS) == judged
        # too few held-out objects to judge by: the annotations are used, as by default
        assert result.refit["merge_distance"]["on"] == ("held-out" if judged else "annotations")


def test_adapt_norm_statistics_moves_only_the_batch_norm_statistics(spoco_tiny):
    import torch

    from napari_instseg.core.finetune import adapt_norm_statistics

    net = spoco_tiny.net
    weights = {
        k: v.clone()
        for k, v in net.state_dict().items()
        if "running" not in k and "batches" not in k
    }
    means = {k: v.clone() for k, v in net.state_dict().items() if "running_mean" in k}
    images = [np.random.default_rng(0).normal(3.0, 2.0, (1, 40, 56)).astype(np.float32)]
    assert adapt_norm_statistics(net, images, multiple=spoco_tiny.size_multiple) == 1
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())  # momentum twin included
    assert any(not torch.allclose(state[k], v) for k, v in means.items())
    assert not net.training
    assert adapt_norm_statistics(net, []) == 0


def test_finetune_with_adapted_statistics_and_context_images(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    item = _annotated(disks, 0)
    context = [_annotated(disks, 2).image * 3.0 + 1.0]  # another image, unannotated
    config = FinetuneConfig(
        iterations=4, batch_size=2, patch_size=32, val_every=2, adapt_norm=True, device="cpu"
    )
    result = run(
        finetune(
            spoco_tiny,
            [item],
            name="adapted",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
            context=context,
        )
    )
    card = read_card(result.model_path)
    assert card.training["finetune_config"]["adapt_norm"] is True
    assert card.parent == spoco_tiny.card.name


def _weights(path):
    from napari_instseg.core.checkpoint import load_model

    return load_model(path)[1].state_dict()


def _same_weights(a, b) -> bool:
    import torch

    return all(torch.equal(a[k], b[k]) for k in a)


def test_too_few_held_out_objects_cannot_judge_and_the_latest_is_published(
    spoco_tiny, disks, tmp_path
):
    """5 annotated objects at fraction 0.2 hold out 1: its AP is 0 or 1 and means nothing, so
    the result says so, no 'AP fell' warning is given, and the latest checkpoint (not the
    'best' by that one object) is published."""
    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import (
        MIN_HELD_OUT_OBJECTS,
        FinetuneConfig,
        describe_heldout,
        finetune,
    )
    from napari_instseg.core.jobs import run

    config = FinetuneConfig(
        iterations=10, batch_size=2, patch_size=32, val_every=5, held_out_fraction=0.2,
        device="cpu",
    )  # fmt: skip
    result = run(
        finetune(
            spoco_tiny,
            [_annotated(disks)],
            name="few",
            run_dir=tmp_path / "run",
            models_dir=tmp_path / "models",
            config=config,
        )
    )
    assert result.heldout_objects == 1 < MIN_HELD_OUT_OBJECTS and not result.heldout_judged
    text = describe_heldout(result, held_out_fraction=0.2)
    assert text == "held-out AP cannot be judged (1 object held out; annotate at least 25)"
    assert not any("held-out AP fell" in w for w in result.warnings)
    best, latest = read_card(tmp_path / "run" / "best.json"), read_card(result.run.latest_path)
    assert best.training["iterations_done"] != latest.training["iterations_done"]  # a choice
    published = _weights(result.model_path)
    assert _same_weights(published, _weights(result.run.latest_path))
    assert not _same_weights(published, _weights(tmp_path / "run" / "best.json"))
    card = read_card(result.model_path)
    assert card.metrics["heldout_objects"] == 1 and card.metrics["heldout_judged"] is False
    assert "val_ap50" not in card.metrics  # the run's best-so-far, not this checkpoint's
    assert describe_heldout(result, held_out_fraction=0.0).startswith("held-out AP cannot")


def test_enough_held_out_objects_judge_and_the_best_is_published(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.finetune import (
        AnnotatedImage,
        FinetuneConfig,
        describe_heldout,
        finetune,
    )
    from napari_instseg.core.jobs import run

    item = _annotated(disks, 1)
    truth = disks(1, (64, 64))  # 9 objects, all annotated; 5 of them held out
    item = AnnotatedImage(item.name, item.image, np.where(truth > 0, truth, item.annotation))
    config = FinetuneConfig(
        iterations=10, batch_size=2, patch_size=32, val_every=5, held_out_fraction=0.6,
        publish="best", device="cpu",
    )  # fmt: skip
    result = run(
        finetune(spoco_tiny, [item], name="many", run_dir=tmp_path / "run",
                 models_dir=tmp_path / "models", config=config)
    )  # fmt: skip
    assert result.heldout_objects == 5 and result.heldout_judged
    assert _same_weights(_weights(result.model_path), _weights(result.run.best_path))
    text = describe_heldout(result, held_out_fraction=0.6)
    assert text == (
        f"held-out AP@0.5 {result.heldout_before:.3f} -> {result.heldout_after:.3f} (5 objects)"
    )


def test_the_latest_is_published_though_held_out_objects_could_judge(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.finetune import AnnotatedImage, FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    item = _annotated(disks, 1)
    truth = disks(1, (64, 64))
    item = AnnotatedImage(item.name, item.image, np.where(truth > 0, truth, item.annotation))
    config = FinetuneConfig(
        iterations=10, batch_size=2, patch_size=32, val_every=3, held_out_fraction=0.6,
        compare_parent=False, device="cpu",
    )  # fmt: skip
    result = run(
        finetune(spoco_tiny, [item], name="last", run_dir=tmp_path / "run",
                 models_dir=tmp_path / "models", config=config)
    )  # fmt: skip
    assert result.heldout_judged  # judged, and still the latest is published (the default)
    assert _same_weights(_weights(result.model_path), _weights(result.run.latest_path))


def _discs(centres, radius, shape=(60, 60)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint32)
    for i, (y, x) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = i
    return labels


def test_compare_labels_counts_sizes_and_agreement():
    from napari_instseg.core.finetune import compare_labels

    parent = _discs([(10, 10), (10, 40), (40, 10), (40, 40)], 6)
    tuned = np.where(parent > 2, 0, parent)  # objects 3 and 4 lost ...
    tuned[_discs([(40, 10)], 3) > 0] = 3  # ... 3 found again as its core (IoU 1/4)
    tuned[55:57, 55:57] = 9  # and a speck
    c = compare_labels([parent], [tuned])
    assert c["objects_parent"] == 4 and c["objects_tuned"] == 4
    assert c["matched"] == 2 and c["agreement"] == 0.5
    assert c["diameter_parent"] == pytest.approx(np.sqrt(4 * (parent == 1).sum() / np.pi))
    assert c["diameter_tuned"] < c["diameter_parent"]
    empty = compare_labels([np.zeros((5, 5), np.uint32)], [parent[:5, :5] * 0])
    assert empty["agreement"] is None and empty["diameter_parent"] is None


def test_comparison_leaves_out_what_the_user_annotated():
    """Objects near annotated pixels (objects or painted background) are where the user
    told the model what to do; only the rest is compared, and unannotated images whole."""
    from napari_instseg.core.finetune import (
        AnnotatedImage,
        UnannotatedImage,
        compare_with_parent,
    )

    parent = _discs([(10, 10), (10, 40), (40, 10), (40, 40)], 6)
    tuned = parent.copy()
    tuned[parent == 1] = 0  # the user's correction: gone where they painted background
    tuned[parent == 2] = 0  # ... and, 2 px away from an annotated object, changed
    tuned[2:18, 30:50] = 8
    annotation = np.zeros_like(parent)
    annotation[parent == 1] = BACKGROUND_LABEL
    annotation[2:18, 30:50][tuned[2:18, 30:50] == 8] = 1
    image = np.zeros(parent.shape, np.float32)
    images = [AnnotatedImage("a", image, annotation), UnannotatedImage("b", image)]
    c = compare_with_parent(images, [(parent, tuned), (parent, np.zeros_like(parent))])
    assert [r["image"] for r in c["images"]] == ["a", "b"]
    a, b = c["images"]
    assert (a["objects_parent"], a["objects_tuned"], a["agreement"]) == (2, 2, 1.0)
    assert (b["objects_parent"], b["objects_tuned"], b["agreement"]) == (4, 0, 0.0)
    assert (c["objects_parent"], c["objects_tuned"], c["matched"]) == (6, 2, 2)


def test_warnings_on_a_large_change_where_the_user_did_not_annotate():
    from napari_instseg.core.finetune import compare_labels, comparison_warnings

    centres = [(y, x) for y in range(8, 60, 16) for x in range(8, 60, 16)]  # 16 objects
    parent = _discs(centres, 5, (64, 64))
    assert comparison_warnings(compare_labels([parent], [parent])) == []
    fewer = np.where(np.isin(parent, [1, 2, 3]), 0, parent)  # 13 of 16: a small change
    assert comparison_warnings(compare_labels([parent], [fewer])) == []

    specks = parent.copy()  # the nuclei sample's failure: every object and a speck beside it
    for i, (y, x) in enumerate(centres):
        specks[y + 6, x + 6] = 100 + i
    (count, size) = comparison_warnings(compare_labels([parent], [specks]))
    assert "finds 32 objects against the base model's 16 (+100%)" in count
    assert "specks" in count and "smaller" in size

    moved = _discs([(y + 3, x + 3) for y, x in centres], 5, (64, 64))  # IoU about 0.4
    (agreement,) = comparison_warnings(compare_labels([parent], [moved]))
    assert "only 0% of the base model's objects are found again" in agreement

    sparse = _discs([(10, 10), (40, 40)], 5)  # 2 -> 6 objects: too few to call it a change
    more = sparse.copy()
    more[50:52, 2:4], more[2:4, 50:52], more[55:57, 20:22], more[20:22, 55:57] = 3, 4, 5, 6
    assert comparison_warnings(compare_labels([sparse], [more])) == []


def test_finetune_compares_with_its_parent_through_segment_image(spoco_tiny, disks, tmp_path):
    """The published comparison is what segment_image gives with both models on the annotated
    image (outside its annotations) and on the context images (whole), and its warnings are
    in the result."""
    from dataclasses import replace

    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import (
        FinetuneConfig,
        UnannotatedImage,
        compare_with_parent,
        comparison_warnings,
        finetune,
    )
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import load_model, segment_image

    item = _annotated(disks, 0)
    context = [_annotated(disks, 2).image, UnannotatedImage("other", _annotated(disks, 3).image)]
    config = FinetuneConfig(
        iterations=6, lr=5e-2, batch_size=2, patch_size=32, val_every=3, device="cpu"
    )
    result = run(
        finetune(spoco_tiny, [item], name="cmp", run_dir=tmp_path / "run",
                 models_dir=tmp_path / "models", config=config, context=context)
    )  # fmt: skip
    comparison = result.comparison
    assert [r["image"] for r in comparison["images"]] == ["disks0", "context 1", "other"]
    tuned = load_model(result.model_path)
    images = [item, UnannotatedImage("context 1", context[0]), context[1]]
    pairs = [
        tuple(run(segment_image(m, x.image, channel_axis=x.channel_axis)).labels
              for m in (spoco_tiny, tuned))
        for x in images
    ]  # fmt: skip
    assert compare_with_parent(images, pairs) == comparison
    assert comparison["objects_tuned"] > 0  # something to compare (lr 5e-2 moves it a lot)
    assert set(comparison_warnings(comparison)) <= set(result.warnings)
    assert read_card(result.model_path).metrics["parent_comparison"] == comparison

    off = replace(config, iterations=2, compare_parent=False)
    off = run(
        finetune(spoco_tiny, [item], name="off", run_dir=tmp_path / "run2",
                 models_dir=tmp_path / "models", config=off)
    )  # fmt: skip
    assert off.comparison is None
    assert "parent_comparison" not in read_card(off.model_path).metrics


def test_anchor_weight_shrinks_with_the_number_of_annotated_objects():
    from napari_instseg.core.finetune import effective_anchor_weight

    assert effective_anchor_weight(1.0, 50, 0) == 1.0  # off: the same for any count
    assert effective_anchor_weight(1.0, 8, 10) == 1.0  # in full up to 10 objects
    assert effective_anchor_weight(1.0, 10, 10) == 1.0
    assert effective_anchor_weight(2.0, 40, 10) == pytest.approx(0.5)


def test_finetune_records_the_anchor_weight_it_used(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.checkpoint import load_model
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    item = _annotated(disks)
    config = FinetuneConfig(
        iterations=2, batch_size=1, patch_size=32, held_out_fraction=0.0, anchor_weight=2.0,
        anchor_objects=1, compare_parent=False, refit_knobs=False, device="cpu",
    )  # fmt: skip
    result = run(finetune(spoco_tiny, [item], name="a", run_dir=tmp_path / "run",
                          models_dir=tmp_path, config=config))  # fmt: skip
    card, _ = load_model(result.model_path)
    objects = card.training["annotations"][0]["objects"]
    assert objects > 1
    assert card.training["anchor_weight_used"] == pytest.approx(2.0 / objects)


def test_pseudo_labels_add_the_parents_sure_objects_away_from_the_annotation(spoco_tiny, disks):
    from napari_instseg.core.finetune import make_finetune_samples

    item = _annotated(disks)
    full = np.isin(item.annotation, [1, 2, 3, 4, 5]) | (item.annotation == BACKGROUND_LABEL)

    def pseudo(x):  # a parent that is sure of every true disc
        truth = disks(0, (64, 64)).astype(np.uint32)
        return truth, truth > 0

    train, val, record = make_finetune_samples(
        spoco_tiny, [item], held_out_fraction=0.4, rng=np.random.default_rng(0), pseudo=pseudo
    )
    plain, _, _ = make_finetune_samples(
        spoco_tiny, [item], held_out_fraction=0.4, rng=np.random.default_rng(0)
    )
    added = record[0]["pseudo_objects"]
    assert added > 0
    assert len(np.unique(train[0].labels[train[0].labels > 0])) == 3 + added  # 5 - 2 held out
    held = np.unique(val[0].labels[val[0].labels > 0])
    assert not train[0].labels[np.isin(item.annotation, held)].any()  # nor on held-out ones
    extra = (train[0].labels > 0) & ~(plain[0].labels > 0)
    assert not (extra & ndi.binary_dilation(full, iterations=2)).any()  # away from annotations


def test_finetune_trains_on_pseudo_labels_of_context_images(spoco_tiny, disks, tmp_path):
    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run

    item = _annotated(disks, 0)
    context = [_annotated(disks, 2).image]
    config = FinetuneConfig(
        iterations=2, batch_size=1, patch_size=32, held_out_fraction=0.0, pseudo_labels=0.5,
        compare_parent=False, refit_knobs=False, device="cpu",
    )  # fmt: skip
    result = run(finetune(spoco_tiny, [item], name="p", run_dir=tmp_path / "run",
                          models_dir=tmp_path, config=config, context=context))  # fmt: skip
    card = read_card(result.model_path)
    assert "pseudo_objects" in card.training["annotations"][0]
    assert card.training["finetune_config"]["pseudo_labels"] == 0.5
    assert [c["image"] for c in card.training["pseudo_context"]] == ["context 1"]
