"""bioimage.io model packages: validated offline by the pinned ``bioimageio.spec`` (with every
network connection refused), the rules that matter to a consumer checked directly as well,
checksums, test tensors reproduced from the package alone (and by ``bioimageio.core`` where it
is installed), and export -> import -> the same labels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_instseg.core.arrays import InputError
from napari_instseg.core.checkpoint import ModelCard
from napari_instseg.core.io.bioimageio import (
    CONFIG_KEY,
    export_bioimageio,
    import_bioimageio,
    load_bioimageio,
    read_package,
)

MODEL = "threeclass-nuclei"  # the smallest shipped model with the quickest back-end


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return export_bioimageio(MODEL, tmp_path_factory.mktemp("bioimageio") / "model.zip")


@pytest.fixture(scope="module")
def contents(package) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(package) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    return yaml.safe_load(files["rdf.yaml"]), files


@pytest.fixture(scope="module")
def original():
    from napari_instseg.core.pipeline import load_model

    return load_model(MODEL)


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def rezip(src: Path, dst: Path, *, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))
    return dst


def test_rdf_has_the_fields_the_spec_requires(contents, original):
    rdf, files = contents
    card = original.card
    assert rdf["type"] == "model" and re.fullmatch(r"0\.5\.\d+", rdf["format_version"])
    assert 5 <= len(rdf["name"]) <= 64 and rdf["description"]
    assert rdf["authors"] and all(a.get("name") for a in rdf["authors"])
    assert rdf["cite"] and all(c["text"] and (c.get("doi") or c.get("url")) for c in rdf["cite"])
    assert any(c.get("doi") == "10.1002/cyto.a.23863" for c in rdf["cite"])  # the method's paper
    assert rdf["license"] == "BSD-3-Clause"
    readme = files[rdf["documentation"]].decode()
    assert rdf["documentation"].endswith(".md") and "## Validation" in readme
    assert card.backend in readme and str(card.metrics["test"]["ap@0.50"]) in readme

    (inp,) = rdf["inputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    assert [a.get("id") for a in inp["axes"][2:]] == ["y", "x"]
    assert inp["axes"][1]["channel_names"] == ["channel0"]
    for axis in inp["axes"][2:]:
        assert axis["size"]["step"] == original.size_multiple  # depth 4: 3 poolings
        assert axis["size"]["min"] % original.size_multiple == 0
    steps = {p["id"]: p.get("kwargs", {}) for p in inp["preprocessing"]}
    assert steps["scale_range"]["axes"] == ["y", "x"]  # per channel, per image
    assert steps["scale_range"]["min_percentile"] == card.normalisation["low"]
    assert steps["scale_range"]["max_percentile"] == card.normalisation["high"]

    (out,) = rdf["outputs"]  # the threeclass net has one head
    assert out["id"] == "classes"
    assert out["axes"][1]["channel_names"] == ["background", "interior", "boundary"]
    for axis in out["axes"][2:]:
        assert axis["size"] == {"tensor_id": "image", "axis_id": axis["id"]}
        assert 0 < 2 * axis["halo"] < inp["axes"][2]["size"]["min"]  # the spec's halo rule
    ids = [t["id"] for t in rdf["inputs"] + rdf["outputs"]]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)

    weights = rdf["weights"]["pytorch_state_dict"]
    arch = weights["architecture"]
    assert arch["callable"] == "InstSegNetwork" and arch["source"].endswith(".py")
    assert arch["kwargs"] == {
        "method": "threeclass",
        "method_config": card.method_config,
        "outputs": ["classes"],
    }
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", weights["pytorch_version"])

    ours = rdf["config"][CONFIG_KEY]
    assert (ours["method"], ours["backend"], ours["knobs"]) == (
        card.method,
        card.backend,
        card.backend_config,
    )
    assert {a["source"] for a in rdf["attachments"]} == {ours["card"], ours["weights"]}


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a network connection is refused and recorded: a validator that
    swallowed the refusal would still fail the test."""
    import socket

    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError(f"network access refused by the test: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == [], f"bioimage.io validation tried the network: {attempts}"


#: The one alert our packages keep: bioimage.io wants a maintainer with a GitHub account,
#: which only the person who uploads a model can give (and which the validator checks online).
MAINTAINER_ALERT = "Missing `maintainers` or any author in `authors` with a specified `github_user`"


def validate_offline(path: Path):
    """``bioimageio.spec``'s validation of a package file, reading every file it names
    (sizes, checksums, test and sample tensors) from the zip."""
    from bioimageio.spec import ValidationContext, load_description

    with ValidationContext(perform_io_checks=True, log_warnings=False, disable_cache=True):
        return load_description(path, perform_io_checks=True)


def problems(descr) -> tuple[list[str], list[str]]:
    details = descr.validation_summary.details
    errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in details for e in d.errors]
    warnings = [f"{'.'.join(map(str, w.loc))}: {w.msg}" for d in details for w in d.warnings]
    return errors, warnings


def test_the_package_validates_with_bioimageio_spec_offline(package, no_network):
    from bioimageio.spec.model.v0_5 import ModelDescr

    descr = validate_offline(package)
    errors, warnings = problems(descr)
    assert descr.validation_summary.status == "valid-format", errors
    assert isinstance(descr, ModelDescr)
    assert [w for w in warnings if MAINTAINER_ALERT not in w] == []  # FAIR fields all filled
    weights = descr.weights
    assert weights.pytorch_state_dict is not None and weights.torchscript is not None
    assert weights.pytorch_state_dict.architecture.callable == "InstSegNetwork"
    (inp,), (out,) = descr.inputs, descr.outputs
    assert inp.sample_tensor is not None and out.sample_tensor is not None
    # (the spec appends a float32 ensure_dtype of its own)
    assert [p.id for p in inp.preprocessing][:2] == ["ensure_dtype", "scale_range"]
    assert descr.config.bioimageio.reproducibility_tolerance[0].output_ids == ["classes"]


def test_spec_validation_reads_the_files_it_checks(package, tmp_path, no_network):
    """The offline validation is no formality: a test tensor changed after packaging fails
    its checksum, without the network."""
    with zipfile.ZipFile(package) as zf:
        data = bytearray(zf.read("test_input.npy"))
    data[-1] ^= 0xFF
    tampered = rezip(package, tmp_path / "tampered.zip", replace={"test_input.npy": bytes(data)})
    descr = validate_offline(tampered)
    assert descr.validation_summary.status == "failed"
    errors, _ = problems(descr)
    assert any("test_input.npy" in e and "SHA256 mismatch" in e for e in errors), errors


def test_method_papers_are_cited_by_doi():
    """Method papers are in the packages by DOI: the validator would fetch a URL."""
    from napari_instseg.core.io.bioimageio import _METHOD_CITATIONS
    from napari_instseg.core.methods import list_methods

    assert set(_METHOD_CITATIONS) <= set(list_methods())
    for cite in _METHOD_CITATIONS.values():
        assert cite["text"] and re.fullmatch(r"10\.\d{4,}/\S+", cite["doi"]) and "url" not in cite


@pytest.mark.slow
def test_bioimageio_core_reproduces_the_test_outputs_offline(package, no_network):
    """What bioimage.io's own test runner does with a package: build the network from the
    architecture file, load each weight format, preprocess the test input and compare with
    the test outputs, at several input sizes and batch sizes.

    Runs where ``bioimageio.core`` is installed. It is not in the ``testing`` extra: every
    release pins an exact ``bioimageio.spec`` (0.11.0 pins 0.5.12.0), and that spec fails
    on every package with the pinned pydantic 2.14 (fixed in 0.5.14); install it with
    ``pip install --no-deps bioimageio.core==0.11.0 xarray imagecodecs`` to run this test.
    """
    core = pytest.importorskip("bioimageio.core")
    for weight_format in ("pytorch_state_dict", "torchscript"):
        summary = core.test_model(package, weight_format=weight_format, devices=["cpu"])
        failed = [
            (d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"
        ]
        assert summary.status == "passed", failed
        names = [d.name for d in summary.details]
        assert any(n.startswith("Reproduce test outputs") for n in names), names


def test_every_file_is_described_and_matches_its_checksum(package, contents):
    rdf, files = contents
    described = {}

    def walk(node):
        if isinstance(node, dict):
            if "source" in node:
                described[node["source"]] = node.get("sha256")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in rdf.items() if k != "config"})
    described[rdf["documentation"]] = None
    described.update({c: None for c in rdf["covers"]})
    assert set(files) == set(described) | {"rdf.yaml"}  # nothing unnamed, nothing missing
    for name, sha in described.items():
        if name not in (rdf["documentation"], *rdf["covers"]):
            assert sha == hashlib.sha256(files[name]).hexdigest(), name
    # The attached card and weights are the shipped model's files, byte for byte.
    from napari_instseg.core.zoo import zoo_dir

    ours = rdf["config"][CONFIG_KEY]
    assert files[ours["weights"]] == (zoo_dir() / f"{MODEL}.safetensors").read_bytes()
    shipped = ModelCard.from_dict(json.loads((zoo_dir() / f"{MODEL}.json").read_text()))
    assert ModelCard.from_dict(json.loads(files[ours["card"]])) == shipped
    # read_package checks the same on its own
    rdf_read, checked = read_package(package)
    assert rdf_read == rdf and set(checked) >= {ours["card"], ours["weights"], "weights.pt"}


def test_cover_is_a_real_prediction(contents):
    import imageio.v3 as iio

    rdf, files = contents
    cover = iio.imread(files[rdf["covers"][0]], extension=".png")
    assert cover.ndim == 3 and cover.shape[1] == 2 * cover.shape[0]  # 2:1
    left, right = np.split(cover.astype(int), 2, axis=1)
    coloured = np.abs(right - left).sum(axis=-1) > 0  # where labels were drawn
    assert 0.05 < coloured.mean() < 0.9
    assert rdf["config"][CONFIG_KEY]["cover_objects"] >= 10  # nuclei found in the crop


def _scale_range(x: np.ndarray, axes: list[str], kwargs: dict, all_axes: list[str]) -> np.ndarray:
    """bioimage.io's scale_range, written from the spec's formula."""
    reduce = tuple(all_axes.index(a) for a in axes)
    lo = np.percentile(x, kwargs["min_percentile"], axis=reduce, keepdims=True)
    hi = np.percentile(x, kwargs["max_percentile"], axis=reduce, keepdims=True)
    return ((x - lo) / (hi - lo + kwargs.get("eps", 1e-6))).astype(np.float32)


def test_test_outputs_are_reproduced_from_the_package_alone(contents, tmp_path):
    """What a bioimage.io consumer does: preprocess the test input as the rdf says, build
    the architecture file's callable, load weights.pt, compare with the test outputs."""
    import torch

    rdf, files = contents
    (inp,) = rdf["inputs"]
    x = npy(files[inp["test_tensor"]["source"]])
    all_axes = [a.get("id", a["type"]) for a in inp["axes"]]
    assert x.dtype == np.float32 and x.shape[:2] == (1, 1)
    for axis, n in zip(inp["axes"][2:], x.shape[2:], strict=True):
        assert n >= axis["size"]["min"] and (n - axis["size"]["min"]) % axis["size"]["step"] == 0
    for step in inp["preprocessing"]:
        if step["id"] == "scale_range":
            x = _scale_range(x, step["kwargs"]["axes"], step["kwargs"], all_axes)
    weights = rdf["weights"]["pytorch_state_dict"]
    arch = weights["architecture"]
    source = tmp_path / arch["source"]
    source.write_bytes(files[arch["source"]])
    spec = importlib.util.spec_from_file_location("bioimageio_arch_under_test", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    network = getattr(module, arch["callable"])(**arch["kwargs"])
    # weights_only: torch's restricted loader (tensors only), what bioimage.io tools use
    state = torch.load(io.BytesIO(files[weights["source"]]), weights_only=True)
    network.load_state_dict(state)
    network.eval()
    with torch.no_grad():
        got = network(torch.from_numpy(x))
    assert len(got) == len(rdf["outputs"])
    for tensor, out in zip(got, rdf["outputs"], strict=True):
        expected = npy(files[out["test_tensor"]["source"]])
        assert expected.shape == (1, len(out["axes"][1]["channel_names"]), *x.shape[2:])
        np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-4, atol=1e-4)
    sys.modules.pop("bioimageio_arch_under_test", None)


def test_torchscript_weights_reproduce_the_network_at_any_size(contents):
    """The traced network (for Java tools such as deepImageJ) gives the test outputs, and
    the eager network's outputs on an input of another size."""
    import torch

    from napari_instseg.core.bioimageio_network import InstSegNetwork

    rdf, files = contents
    entry = rdf["weights"]["torchscript"]
    assert entry["parent"] == "pytorch_state_dict" and entry["pytorch_version"]
    scripted = torch.jit.load(io.BytesIO(files[entry["source"]]))
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    x = npy(files[inp["test_tensor"]["source"]])
    all_axes = [a.get("id", a["type"]) for a in inp["axes"]]
    kwargs = inp["preprocessing"][-1]["kwargs"]
    x = _scale_range(x, kwargs["axes"], kwargs, all_axes)
    with torch.no_grad():
        (got,) = scripted(torch.from_numpy(x))
    expected = npy(files[out["test_tensor"]["source"]])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)

    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    eager = InstSegNetwork(**arch["kwargs"])
    state = torch.load(io.BytesIO(files["weights.pt"]), weights_only=True)
    eager.load_state_dict(state)
    eager.eval()
    other = torch.from_numpy(x[..., 8:136, 24:216].copy())  # 128 x 192
    with torch.no_grad():
        (a,), (b,) = scripted(other), eager(other)
    assert a.shape == (1, 3, 128, 192)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_round_trip_gives_the_same_labels(package, original, tmp_path):
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import load_model, segment_image
    from napari_instseg.core.samples import load_sample

    restored = load_bioimageio(package)
    assert restored.card == original.card
    a, b = original.net.state_dict(), restored.net.state_dict()
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)

    card_path = import_bioimageio(package, tmp_path)
    assert card_path == tmp_path / f"{MODEL}.json"
    assert (tmp_path / f"{MODEL}.safetensors").is_file()
    installed = load_model(str(card_path))

    image, _ = load_sample("nuclei2d_dsb_stardist")
    expected = run(segment_image(original, image)).labels
    got = run(segment_image(installed, image)).labels
    assert expected.max() > 50
    np.testing.assert_array_equal(got, expected)


def test_tuned_knobs_travel_in_config_and_card(tmp_path, original):
    from napari_instseg.core.zoo import list_models

    path = export_bioimageio(
        MODEL,
        tmp_path / "tuned.zip",
        knobs={"min_size": "55"},
        name="nuclei-tuned",
        torchscript=False,
    )
    rdf, _ = read_package(path)
    assert rdf["config"][CONFIG_KEY]["knobs"]["min_size"] == 55
    restored = load_bioimageio(path)
    assert restored.card.backend_config["min_size"] == 55
    assert (restored.card.name, restored.card.parent) == ("nuclei-tuned", MODEL)
    assert restored.card.weights_sha256 == original.card.weights_sha256  # same weights
    card_path = import_bioimageio(path, tmp_path / "models")
    assert ("nuclei-tuned", card_path) in [(c.name, p) for c, p in list_models([card_path.parent])]
    with pytest.raises(InputError, match="not_a_knob"):
        export_bioimageio(MODEL, tmp_path / "bad.zip", knobs={"not_a_knob": 1})
    assert not (tmp_path / "bad.zip").exists()


def test_an_unsaved_model_is_exported_with_fresh_weights(tmp_path, original):
    """A loaded model with no files behind it (say, fine-tuned in napari)."""
    import torch

    from napari_instseg.core.pipeline import Model

    net = original.method.build_net(original.config)
    net.load_state_dict(original.net.state_dict())
    with torch.no_grad():
        net.heads["classes"].bias.add_(0.25)  # different weights from the shipped ones
    model = Model.from_card(original.card, net.eval())
    path = export_bioimageio(model, tmp_path / "changed.zip", torchscript=False)
    restored = load_bioimageio(path)
    assert restored.card.weights_sha256 != original.card.weights_sha256
    assert torch.allclose(restored.net.heads["classes"].bias, net.heads["classes"].bias)


def test_an_existing_output_is_refused_unless_overwrite(package, tmp_path):
    target = tmp_path / "exists.zip"
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        export_bioimageio(MODEL, target)
    assert target.read_bytes() == b"keep me"
    with pytest.raises(InputError, match=r"\.zip"):
        export_bioimageio(MODEL, tmp_path / "model.tar")
    export_bioimageio(MODEL, target, overwrite=True, torchscript=False)
    assert read_package(target)[0]["type"] == "model"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_normalisation_the_spec_cannot_say_is_refused(tmp_path, original):
    from dataclasses import replace

    card = replace(original.card, normalisation={"kind": "zscore"})
    with pytest.raises(InputError, match="zscore"):
        export_bioimageio((card, original.net), tmp_path / "z.zip")


def _foreign(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    del rdf["config"]
    return rezip(src, dst, replace={"rdf.yaml": yaml.safe_dump(rdf).encode()})


def _old_format(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    rdf["format_version"] = "0.4.10"
    return rezip(src, dst, replace={"rdf.yaml": yaml.safe_dump(rdf).encode()})


def _tampered(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".safetensors"))
        data = bytearray(zf.read(name))
    data[-1] ^= 0xFF
    return rezip(src, dst, replace={name: bytes(data)})


def _no_rdf(src: Path, dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("README.md", "# nothing")
    return dst


def _not_zip(src: Path, dst: Path) -> Path:
    dst.write_text("not a zip")
    return dst


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_not_zip, "not a zip file"),
        (_no_rdf, "no rdf.yaml"),
        (_foreign, "napari-instseg did not export"),
        (_old_format, "format_version 0.4.10"),
        (_tampered, "does not match its sha256"),
    ],
)
def test_bad_packages_are_refused_in_one_line(package, tmp_path, make, message):
    bad = make(package, tmp_path / "bad.zip")
    with pytest.raises(InputError, match=message) as err:
        import_bioimageio(bad, tmp_path / "models")
    assert "\n" not in str(err.value) and str(err.value).startswith("bad.zip: ")
    assert not (tmp_path / "models").exists()  # nothing written


def test_importing_twice_is_fine_but_a_different_model_is_not_replaced(package, tmp_path):
    first = import_bioimageio(package, tmp_path)
    exported = first.read_bytes()
    assert import_bioimageio(package, tmp_path) == first
    other = json.loads(exported)
    other["backend_config"]["min_size"] = 40  # another model of the same name
    first.write_text(json.dumps(other))
    with pytest.raises(InputError, match="already in"):
        import_bioimageio(package, tmp_path)
    assert json.loads(first.read_text())["backend_config"]["min_size"] == 40  # kept
    import_bioimageio(package, tmp_path, overwrite=True)
    assert first.read_bytes() == exported


def test_a_3d_model_gets_zyx_axes_that_its_test_tensors_fit(tmp_path):
    """An (untrained, tiny) 3D model on the bundled 3D sample: sizes and halos by the spec's
    rules, and the package still imports."""
    from napari_instseg.core.checkpoint import ModelCard
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("threeclass")
    cfg = method.config_type(ndim=3, depth=3, width=4)
    card = ModelCard(
        name="tiny-3d",
        method="threeclass",
        method_config=config_to_dict(cfg),
        backend="watershed",
        modality="fluorescence",
    )
    net = method.build_net(cfg).eval()
    path = export_bioimageio((card, net), tmp_path / "tiny3d.zip")
    rdf, files = read_package(path)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a.get("id") for a in inp["axes"][2:]] == ["z", "y", "x"]
    x = npy(files[inp["test_tensor"]["source"]])
    assert x.ndim == 5 and x.shape[:2] == (1, 1)
    for axis, n, out_axis in zip(inp["axes"][2:], x.shape[2:], out["axes"][2:], strict=True):
        size = axis["size"]
        assert size["step"] == 4 and n >= size["min"] and (n - size["min"]) % 4 == 0
        assert size["min"] - 2 * out_axis["halo"] >= 1
    assert npy(files[out["test_tensor"]["source"]]).shape == (1, 3, *x.shape[2:])
    assert load_bioimageio(path).card.ndim == 3
    errors, _ = problems(validate_offline(path))
    assert errors == []


def test_an_output_the_spec_cannot_bound_is_refused_with_what_is_missing(tmp_path):
    """bioimage.io bounds each output's reproduction tolerance by 1 % of its test tensor's
    maximum, so an output that is nowhere above 0 on every test window cannot be described
    (untrained EmbedSeg offsets start at exactly 0; here they are pushed below it)."""
    import torch

    from napari_instseg.core.checkpoint import ModelCard
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("embedseg")
    cfg = method.config_type(depth=2, width=4)
    net = method.build_net(cfg).eval()
    with torch.no_grad():  # offsets below 0 everywhere, whatever the input
        net.heads["offsets"].weight.zero_()
        net.heads["offsets"].bias.fill_(-1.0)
    card = ModelCard(
        name="tiny-embedseg",
        method="embedseg",
        method_config=config_to_dict(cfg),
        backend=method.default_backend,
        modality="fluorescence",
    )
    target = tmp_path / "tiny.zip"
    with pytest.raises(InputError, match="output 'offsets' is nowhere above 0") as err:
        export_bioimageio((card, net), target, torchscript=False)
    assert "\n" not in str(err.value) and "another image" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_allcell_validates_from_a_window_where_every_output_rises_above_0(tmp_path, no_network):
    """allcell's boundary logits stay below 0 in the centre of the nuclei sample; the
    export takes the test input from another window, and the package validates."""
    path = export_bioimageio("allcell", tmp_path / "allcell.zip", torchscript=False)
    descr = validate_offline(path)
    errors, _ = problems(descr)
    assert descr.validation_summary.status == "valid-format", errors
    rdf, files = read_package(path)
    for out in rdf["outputs"]:
        assert npy(files[out["test_tensor"]["source"]]).max() > 0, out["id"]
