"""Any lens finder: the scorer interface, ONNX and TorchScript models with their specs, export-model, and one
selection function through every route (issue 30)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from lensaudit.cutouts import CutoutStore  # noqa: E402
from lensaudit.data.preprocess import PreprocessConfig, preprocess  # noqa: E402
from lensaudit.errors import InputError  # noqa: E402
from lensaudit.scoring import ScorerError, ScorerSpec, load_scorer, read_spec, score_manifest, write_spec  # noqa: E402


@pytest.fixture(scope="module")
def exported(small_run, tmp_path_factory):
    from lensaudit.scoring.export import export_model

    out = tmp_path_factory.mktemp("exported")
    st = CutoutStore(small_run / "store")
    rep = export_model(small_run / "ck.pt", out, cutouts=st.get(list(st.ids()[:16])))
    return out, rep


def _mean_model(path, channels=3, size=40, w=2.0, b=-1.0, output="probability", band=None):
    """A lens finder built without PyTorch, with onnx's helper API: score = sigmoid(w * mean(x) + b) (or the mean of
    one channel), output (N, 1)."""
    nodes = []
    x = "x"
    if band is not None:
        nodes.append(helper.make_node("Gather", ["x", "band"], ["xb"], axis=1))
        x = "xb"
    nodes += [helper.make_node("ReduceMean", [x], ["m"], axes=[1, 2, 3], keepdims=0),
              helper.make_node("Mul", ["m", "w"], ["mw"]), helper.make_node("Add", ["mw", "b"], ["z"]),
              helper.make_node("Unsqueeze", ["z", "one"], ["z1"])]
    nodes.append(helper.make_node("Sigmoid", ["z1"], ["y"]) if output == "probability"
                 else helper.make_node("Identity", ["z1"], ["y"]))
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [], [w]), helper.make_tensor("b", TensorProto.FLOAT, [], [b]),
             helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    if band is not None:
        inits.append(helper.make_tensor("band", TensorProto.INT64, [1], [band]))
    g = helper.make_graph(nodes, "mean_finder", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                ["n", channels, size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _spec(path, **kw):
    base = {"bands": ["g", "r", "z"], "preprocess": {"name": "raw_robust", "crop": 40}, "output": "probability"}
    base.update(kw)
    path.with_suffix(".spec.yaml").write_text(yaml.safe_dump(base))
    return path


def test_exported_onnx_and_torchscript_score_like_the_checkpoint(small_run, exported):
    out, rep = exported
    assert {f.name for f in out.iterdir()} >= {"model.onnx", "model.ts", "model.spec.yaml", "model.export.json"}
    assert rep["n_checked"] == 20
    st = CutoutStore(small_run / "store")
    x = st.get(list(st.ids()))
    ck = load_scorer(small_run / "ck.pt", "cpu")
    lg0, f0 = ck.score(x, features=True)
    assert np.ptp(lg0) > 1e-3                                        # the stamps differ, so the check has teeth
    for f in ("model.onnx", "model.ts"):
        sc = load_scorer(out / f, "cpu")
        assert sc.spec.preprocess == ck.pre and sc.has_features
        lg, ft = sc.score(x, features=True)
        np.testing.assert_allclose(1 / (1 + np.exp(-lg)), 1 / (1 + np.exp(-lg0)), rtol=0, atol=1e-5)
        np.testing.assert_allclose(ft, f0, rtol=1e-4, atol=1e-5)
    # the exported files also run with another batch size (the batch axis is free)
    np.testing.assert_allclose(load_scorer(out / "model.onnx", "cpu", batch_size=7).score(x)[0], lg0, atol=1e-5)


def test_score_command_takes_onnx_and_torchscript_models(small_run, exported, tmp_path):
    from lensaudit.cli import main

    out, _ = exported
    got = {}
    for f in ("ck.pt", "model.onnx", "model.ts"):
        model = small_run / f if f == "ck.pt" else out / f
        assert main(["score", "--model", str(model), "--manifest", str(small_run / "manifest.parquet"),
                     "--store", str(small_run / "store"), "--out", str(tmp_path / f"{f}.parquet"), "--split", "val",
                     "--features"]) == 0
        got[f] = pd.read_parquet(tmp_path / f"{f}.parquet")
    assert len(got["ck.pt"]) == 30
    for f in ("model.onnx", "model.ts"):
        assert list(got[f]["id"]) == list(got["ck.pt"]["id"])
        np.testing.assert_allclose(got[f]["probability"], got["ck.pt"]["probability"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.stack(got[f]["features"]), np.stack(got["ck.pt"]["features"]), atol=1e-4)


def test_one_selection_function_through_checkpoint_onnx_and_torchscript(small_run, exported, tmp_path):
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.function import SelectionFunction
    from lensaudit.selection.run import run_selection
    from test_selection import _sel_cfg

    out, _ = exported
    # fixed thresholds at the checkpoint's own median and quartile of injection scores, so detection splits the cells
    # (an untrained model scores everything near 0.46) and a 1e-5 difference could show in the tables
    run_selection(_sel_cfg(small_run, tmp_path / "probe", families=[{"name": "sersic", "kind": "sersic"}]))
    q = np.quantile(read_injections(tmp_path / "probe", "sersic")["probability"], [0.5, 0.75]).round(6).tolist()
    tabs, recs = {}, {}
    for name, model in (("ck", small_run / "ck.pt"), ("onnx", out / "model.onnx"), ("ts", out / "model.ts")):
        cfg = _sel_cfg(small_run, tmp_path / name, checkpoint=str(model), families=[{"name": "sersic", "kind": "sersic"}],
                       thresholds={"probability": q, "fpr": [0.1]})
        run_selection(cfg)
        tabs[name] = SelectionFunction.load(tmp_path / name / "selection_sersic.parquet").table
        recs[name] = read_injections(tmp_path / name, "sersic")
    p = recs["ck"]["probability"].to_numpy()
    assert 0.3 < (p >= q[0]).mean() < 0.7 and tabs["ck"]["k"].between(1, tabs["ck"]["n"] - 1).any()
    for name in ("onnx", "ts"):
        np.testing.assert_allclose(recs[name]["probability"], p, rtol=0, atol=1e-5)
        pd.testing.assert_frame_equal(tabs[name], tabs["ck"])


def test_a_model_built_outside_pytorch_runs_through_the_same_path(small_run, tmp_path):
    """An ONNX graph written with onnx's helper API (no PyTorch), scoring per its spec: probability output,
    40-pixel crop; the scores equal the same formula in numpy, through the scorer and the score command's path."""
    model = _spec(_mean_model(tmp_path / "mean.onnx"))
    sc = load_scorer(model, "cpu")
    assert sc.kind == "onnx" and not sc.has_features
    st = CutoutStore(small_run / "store")
    x = st.get(list(st.ids()[:20]))
    lg, ft = sc.score(x)
    want = 1 / (1 + np.exp(-(2.0 * preprocess(x, PreprocessConfig(crop=40)).mean(axis=(1, 2, 3)) - 1.0)))
    np.testing.assert_allclose(1 / (1 + np.exp(-lg)), want, rtol=0, atol=1e-6)
    assert ft is None
    m = pd.read_parquet(small_run / "manifest.parquet")
    df = score_manifest(model, m, st, split="test", batch_size=8)
    assert len(df) == 30 and df["probability"].between(0, 1).all()
    with pytest.raises(ScorerError, match="declares no features"):
        sc.score(x, features=True)


def test_band_order_of_the_spec_is_applied(small_run, tmp_path):
    """A model that reads its input channel 0, told its bands are [z, r, g], sees the z band."""
    st = CutoutStore(small_run / "store")
    x = st.get(list(st.ids()[:10]))
    z_only = preprocess(x[:, 2:3], PreprocessConfig(crop=40)).mean(axis=(1, 2, 3))
    g_only = preprocess(x[:, 0:1], PreprocessConfig(crop=40)).mean(axis=(1, 2, 3))
    assert np.abs(z_only - g_only).max() > 1e-3
    m = _spec(_mean_model(tmp_path / "zrg.onnx", band=0, output="logit", w=1.0, b=0.0), bands=["z", "r", "g"],
              output="logit")
    np.testing.assert_allclose(load_scorer(m, "cpu").score(x)[0], z_only, atol=1e-6)
    one = _spec(_mean_model(tmp_path / "r.onnx", channels=1, output="logit", w=1.0, b=0.0), bands=["r"], output="logit")
    np.testing.assert_allclose(load_scorer(one, "cpu").score(x)[0],
                               preprocess(x[:, 1:2], PreprocessConfig(crop=40)).mean(axis=(1, 2, 3)), atol=1e-6)


def test_probability_outputs_become_logits_that_give_the_probability_back():
    from lensaudit.scoring.scorers import Scorer

    sc = Scorer("none", ScorerSpec(preprocess=PreprocessConfig(), output="probability"))
    p = np.array([0.0, 1e-20, 0.2, 0.5, 0.9, 1.0])
    back = 1 / (1 + np.exp(-sc._logit(p)))
    np.testing.assert_allclose(back, p, rtol=0, atol=2e-15)
    assert np.isfinite(sc._logit(p)).all()


def test_spec_files_are_checked_before_scoring(tmp_path):
    model = _mean_model(tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"m.spec.yaml: file not found"):
        load_scorer(model)
    _spec(model, preprocess={"name": "zscale", "crop": 40})
    with pytest.raises(InputError, match=r"m.spec.yaml: preprocess: .*unknown normalisation 'zscale'"):
        load_scorer(model)
    _spec(model, bands=["g", "g", "r"])
    with pytest.raises(InputError, match=r"bands: .*repeat a band"):
        load_scorer(model)
    _spec(model, outputs="logit")
    with pytest.raises(InputError, match=r"m.spec.yaml: outputs: Extra inputs are not permitted"):
        load_scorer(model)
    _spec(model, stamp_size=64)
    with pytest.raises(InputError, match=r"stamp_size 64"):
        load_scorer(model)
    (tmp_path / "m.spec.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_scorer(model)
    # written and read back unchanged
    s = ScorerSpec(bands=("z", "g"), preprocess=PreprocessConfig.preset("annulus101", crop=48), output="probability")
    assert read_spec(write_spec(s, tmp_path / "w.spec.yaml")) == s


def test_a_model_that_does_not_fit_its_spec_is_refused_before_scoring(tmp_path):
    # four input channels for a three-band spec
    m4 = _spec(_mean_model(tmp_path / "four.onnx", channels=4))
    with pytest.raises(ScorerError, match=r"four.onnx: input 'x' has shape \['n', 4, 40, 40\]"):
        load_scorer(m4)
    # a 64-pixel input for a 40-pixel crop
    m64 = _spec(_mean_model(tmp_path / "big.onnx", size=64))
    with pytest.raises(ScorerError, match=r"big.onnx: input 'x' has shape .*40, 40\)"):
        load_scorer(m64)
    # logits (here 2 * mean + 3, about 3) declared as probabilities: outside [0, 1] on the probe batch
    lo = _spec(_mean_model(tmp_path / "lo.onnx", output="logit", b=3.0))
    with pytest.raises(ScorerError, match=r"lo.onnx: row 0 of the scored cutouts gave .* outside its spec's output "
                                          r"\(probability in \[0, 1\]\)"):
        load_scorer(lo)
    # a features output promised by the spec but absent from the model
    nf = _spec(_mean_model(tmp_path / "nf.onnx"), features=True)
    with pytest.raises(ScorerError, match="nf.onnx: its spec declares a features output"):
        load_scorer(nf)
    # a file that is not ONNX
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    _spec(tmp_path / "junk.onnx")
    with pytest.raises(ScorerError, match="junk.onnx: not a loadable ONNX model"):
        load_scorer(tmp_path / "junk.onnx")
    (tmp_path / "junk.ts").write_bytes(b"not a model")
    _spec(tmp_path / "junk.ts")
    with pytest.raises(ScorerError, match="junk.ts: not a readable TorchScript file"):
        load_scorer(tmp_path / "junk.ts")
    with pytest.raises(ScorerError, match="absent.onnx: file not found"):
        load_scorer(tmp_path / "absent.onnx")


def test_cutouts_of_the_wrong_shape_are_refused(tmp_path):
    sc = load_scorer(_spec(_mean_model(tmp_path / "m.onnx")), "cpu")
    with pytest.raises(ScorerError, match=r"expects raw cutouts \(N, 3, 101, 101\).*got shape \(2, 3, 64, 64\)"):
        sc.score(np.zeros((2, 3, 64, 64), np.float32))


def test_export_refuses_a_model_with_work_after_its_final_linear_layer(small_run, tmp_path, monkeypatch):
    import torch

    from lensaudit.scoring import export as ex

    real = ex._two_outputs

    class Shift(torch.nn.Module):
        def forward(self, t):
            return t + 0.01

    def broken(model):
        net = real(model)
        net.fc = torch.nn.Sequential(net.fc, Shift())     # not what the checkpoint computes
        return net

    monkeypatch.setattr(ex, "_two_outputs", broken)
    with pytest.raises(InputError, match="after its final Linear"):
        ex.export_model(small_run / "ck.pt", tmp_path / "x")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
