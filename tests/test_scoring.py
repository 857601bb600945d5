"""Any lens finder: the scorer interface, ONNX and TorchScript models with their specs, export-model, and one
selection function through every route (issue 30)."""

from __future__ import annotations

import json

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


def _scores_csv(path, run_id="r1", ids=("negative:dr10:south:1", "injection:sersic:0", "positive:lens:7"),
                p=(0.2, 1.0, 0.0), features=True):
    df = pd.DataFrame({"run_id": run_id, "id": list(ids), "probability": list(p)})
    if features:
        for j in range(2):
            df[f"feature_{j}"] = np.arange(len(ids)) * 10.0 + j
    df.to_csv(path, index=False)
    return path


def test_read_scores_gives_logits_rows_and_features_of_a_checked_file(tmp_path):
    """The scores file read back: logits of the probabilities (0 and 1 clipped to finite logits that give them back),
    each id's row in the file, features (N, F) float32 in that order; run ids are compared without surrounding blanks."""
    from lensaudit.scoring.scorers import PROB_EPS
    from lensaudit.selection.scores_file import read_scores

    ids = ["negative:dr10:south:1", "injection:sersic:0", "positive:lens:7"]
    f = _scores_csv(tmp_path / "s.csv", run_id=" r1 ")
    got = read_scores(f, "r1", pd.Index(ids[::-1]))
    assert list(got.index) == ids and got.index.name == "id" and list(got["row"]) == [0, 1, 2]
    lg = got["logit"].to_numpy()
    assert lg[0] == pytest.approx(np.log(0.2 / 0.8), rel=1e-12)
    assert np.isfinite(lg).all() and 30 < lg[1] < 40 and -40 < lg[2] < -30       # clipped PROB_EPS from 0 and 1
    np.testing.assert_allclose(1 / (1 + np.exp(-lg)), [0.2, 1.0, 0.0], rtol=0, atol=2 * PROB_EPS)
    feats = got.attrs["features"]
    assert feats.dtype == np.float32 and feats.tolist() == [[0, 1], [10, 11], [20, 21]]
    assert read_scores(_scores_csv(tmp_path / "n.csv", features=False), "r1", pd.Index(ids)).attrs["features"] is None
    # the same file as Parquet
    pd.read_csv(f, dtype={"run_id": str}).to_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(read_scores(tmp_path / "s.parquet", "r1", pd.Index(ids)), got)
    with pytest.raises(InputError, match="line 2: run_id"):
        read_scores(f, "r2", pd.Index(ids))
    with pytest.raises(InputError, match="file not found"):
        read_scores(tmp_path / "none.csv", "r1", pd.Index(ids))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable CSV or Parquet"):
        read_scores(tmp_path / "junk.parquet", "r1", pd.Index(ids))


def test_read_scores_keeps_ids_and_run_ids_as_written(tmp_path):
    """Ids are text: manifest ids such as "NA", "nan", "None" or "007" and a run id of decimal digits with leading
    zeros come back as written (a CSV reader's defaults would make them missing values or numbers); an empty field
    is a missing value."""
    from lensaudit.selection.scores_file import read_scores

    ids = ["negative:NA", "NA", "nan", "None", "007", "positive:1e5"]
    run_id = "0012345678901234"
    _scores_csv(tmp_path / "s.csv", run_id=run_id, ids=ids, p=[0.5] * 6, features=False)
    got = read_scores(tmp_path / "s.csv", run_id, pd.Index(ids))
    assert list(got.index) == ids
    _scores_csv(tmp_path / "d.csv", run_id=run_id, ids=["007", "42"], p=[0.5, 0.5], features=False)  # all digits
    assert list(read_scores(tmp_path / "d.csv", run_id, pd.Index(["007", "42"])).index) == ["007", "42"]
    (tmp_path / "e.csv").write_text(f"run_id,id,probability\n{run_id},a,0.5\n{run_id},b,\n")
    with pytest.raises(InputError, match="line 3: probability nan of id 'b' is not a number"):
        read_scores(tmp_path / "e.csv", run_id, pd.Index(["a", "b"]))


def test_read_scores_takes_feature_columns_in_any_order_and_refuses_text_where_numbers_belong(tmp_path):
    """feature_0 .. feature_{F-1} in any column order (feature_10 after feature_9, not after feature_1) give the
    features in index order; a column feature_x, or text in a probability or feature, is refused naming the line."""
    from lensaudit.selection.scores_file import read_scores

    ids = ["a", "b"]
    df = pd.DataFrame({"run_id": "r", "id": ids, "probability": [0.1, 0.9]})
    for j in (10, 2, 0, 1, 9, 3, 4, 5, 6, 7, 8):
        df[f"feature_{j}"] = [j, 100 + j]
    df.to_csv(tmp_path / "f.csv", index=False)
    feats = read_scores(tmp_path / "f.csv", "r", pd.Index(ids)).attrs["features"]
    assert feats.tolist() == [list(range(11)), [100 + j for j in range(11)]]
    bad = {"feature_x": (df.assign(feature_x=1.0), "feature columns must be feature_0"),
           "text probability": (df.assign(probability=["0.1", "high"]), "line 3: probability high of id 'b'"),
           "text feature": (df.assign(feature_3=["1", "abc"]), "line 3: a feature of id 'b' is not a finite number")}
    for d, match in bad.values():
        d.to_csv(tmp_path / "b.csv", index=False)
        with pytest.raises(InputError, match=match):
            read_scores(tmp_path / "b.csv", "r", pd.Index(ids))


def _exchange_scores(tmp_path, cutouts):
    """An ExchangeScores over a scores file and the export's cutout hashes, without a selection run around it."""
    from lensaudit.selection.scores_file import ExchangeScores, cutout_hashes, read_scores

    ids = ["negative:dr10:south:1", "injection:sersic:0", "positive:lens:7"]
    ex = object.__new__(ExchangeScores)
    ex.path = _scores_csv(tmp_path / "s.csv")
    ex.hash = pd.Series(cutout_hashes(cutouts), index=pd.Index(ids))
    ex.table = read_scores(ex.path, "r1", ex.hash.index)
    ex.features, ex.run_id = ex.table.attrs["features"], "r1"
    return ex, ids


def test_exchange_scores_look_up_by_id_and_refuse_a_cutout_that_is_not_the_exported_one(tmp_path):
    rng = np.random.default_rng(0)
    cut = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    ex, ids = _exchange_scores(tmp_path, cut)
    lg, feats = ex.score(cut[[2, 0]], ids=[ids[2], ids[0]])
    assert feats is None and lg.dtype == np.float64
    np.testing.assert_allclose(lg, ex.table.loc[[ids[2], ids[0]], "logit"])
    lg, feats = ex.score(cut[[1]], features=True, ids=[ids[1]])
    assert feats.tolist() == [[10.0, 11.0]]
    bad = cut.copy()
    bad[0, 1, 4, 4] = np.nextafter(bad[0, 1, 4, 4], np.float32(np.inf))   # one pixel, one ulp
    with pytest.raises(InputError, match="cutout 'negative:dr10:south:1' rendered now differs .*1 of 2"):
        ex.score(bad[[0, 1]], ids=ids[:2])


def test_audited_predictions_are_the_negatives_and_lenses_under_their_manifest_ids(tmp_path):
    """Manifest ids may hold colons (only the first one, after the kind, is the exchange's): 'negative:dr10:south:1'
    is manifest id 'dr10:south:1'; injections are left out; features follow each id's row."""
    cut = np.zeros((3, 3, 4, 4), np.float32) + np.arange(3, dtype=np.float32)[:, None, None, None]
    ex, _ = _exchange_scores(tmp_path, cut)
    got = ex.audited_predictions()
    assert list(got["id"]) == ["dr10:south:1", "lens:7"]
    np.testing.assert_allclose(got["probability"], [0.2, 1e-15], rtol=1e-12, atol=0)
    assert [f.tolist() for f in got["features"]] == [[0.0, 1.0], [20.0, 21.0]]
    assert ex.identity() == {"kind": "exchange", "path": str(ex.path), "sha256": __import__("lensaudit.utils.io",
                             fromlist=["sha256_file"]).sha256_file(ex.path), "run_id": "r1", "features": True}


def test_the_exchange_run_id_ignores_the_model_and_follows_what_decides_the_cutouts(tmp_path):
    """An export can be scored by any model: its run id hashes the config and inputs that decide the cutouts, and
    none of the model's (checkpoint, extra checkpoints, a spec, a scores file, negatives' predictions, the gate's
    reference network), nor where the run writes or on which device."""
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.scores_file import exchange_id

    cfg = SelectionConfig(manifest=str(tmp_path / "m.parquet"), store=str(tmp_path / "store"), out=str(tmp_path / "o"),
                          checkpoint=str(tmp_path / "a.pt"))
    base = {"manifest": "m1", "store": "s1", "library:stamps": "l1"}
    rid = exchange_id(cfg, base)
    assert len(rid) == 16 and int(rid, 16) >= 0
    for key in ("checkpoint", "extra:b.pt", "spec:model.onnx", "scores", "negatives_predictions", "gate_reference"):
        assert exchange_id(cfg, {**base, key: "another"}) == rid, key
    for key in ("manifest", "store", "library:stamps"):
        assert exchange_id(cfg, {**base, key: "changed"}) != rid, key
    assert exchange_id(cfg.model_copy(update={"checkpoint": "b.pt", "out": "elsewhere", "device": "cuda",
                                              "batch_size": 7}), base) == rid
    assert exchange_id(cfg.model_copy(update={"seed": cfg.seed + 1}), base) != rid
    assert exchange_id(cfg.model_copy(update={"n_per_cell": cfg.n_per_cell + 1}), base) != rid


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


def _user_pipeline(exchange_dir, run_id, model, features=True):
    """What a user with their own pipeline does: read every shard (npz, no pickle), score, write run_id, id,
    probability and features as CSV. Here the 'own pipeline' is the exported ONNX model."""
    import json

    man = json.loads((exchange_dir / "exchange.json").read_text())
    sc = load_scorer(model, "cpu")
    rows = []
    for sh in man["shards"]:
        with np.load(exchange_dir / sh["file"], allow_pickle=False) as z:
            lg, ft = sc.score(z["cutouts"], features=features)
            d = pd.DataFrame({"run_id": run_id, "id": z["ids"], "probability": 1 / (1 + np.exp(-lg))})
            if features:
                d = pd.concat([d, pd.DataFrame(ft, columns=[f"feature_{i}" for i in range(ft.shape[1])])], axis=1)
            rows.append(d)
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def routes(small_run, exported, tmp_path_factory):
    """One selection config through the four routes: the checkpoint, ONNX, TorchScript, and the offline exchange
    (export, scored by a 'user pipeline' from the npz shards, import-scores)."""
    from lensaudit.cli import main
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.function import SelectionFunction
    from lensaudit.selection.run import run_selection
    from test_selection import _sel_cfg

    tmp = tmp_path_factory.mktemp("routes")
    out, _ = exported
    fam = [{"name": "sersic", "kind": "sersic"}]
    # fixed thresholds at the checkpoint's own median and quartile of injection scores, so detection splits the cells
    # (an untrained model scores everything near 0.46) and a 1e-5 difference could show in the tables
    run_selection(_sel_cfg(small_run, tmp / "probe", families=fam))
    q = np.quantile(read_injections(tmp / "probe", "sersic")["probability"], [0.5, 0.75]).round(6).tolist()
    tabs, recs = {}, {}
    for name, model in (("ck", small_run / "ck.pt"), ("onnx", out / "model.onnx"), ("ts", out / "model.ts")):
        run_selection(_sel_cfg(small_run, tmp / name, checkpoint=str(model), families=fam,
                               thresholds={"probability": q, "fpr": [0.1]}))
        tabs[name] = SelectionFunction.load(tmp / name / "selection_sersic.parquet").table
        recs[name] = read_injections(tmp / name, "sersic", features=True)
    cfg = _sel_cfg(small_run, tmp / "exchange", checkpoint=None, families=fam, thresholds={"probability": q, "fpr": [0.1]})
    (tmp / "sel.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["selection", "export", "--config", str(tmp / "sel.yaml")]) == 0
    import json

    run_id = json.loads((tmp / "exchange" / "exchange" / "exchange.json").read_text())["run_id"]
    scores = _user_pipeline(tmp / "exchange" / "exchange", run_id, out / "model.onnx")
    scores.to_csv(tmp / "scores.csv", index=False)
    assert main(["selection", "import-scores", str(tmp / "scores.csv"), "--config", str(tmp / "sel.yaml")]) == 0
    tabs["exchange"] = SelectionFunction.load(tmp / "exchange" / "selection_sersic.parquet").table
    recs["exchange"] = read_injections(tmp / "exchange", "sersic", features=True)
    return {"q": q, "tabs": tabs, "recs": recs, "tmp": tmp, "scores": scores, "run_id": run_id, "small_run": small_run}


def test_one_selection_function_through_checkpoint_onnx_torchscript_and_the_exchange(routes):
    _the_run_records_which_scores_file_and_export_it_used(routes)   # first: this test sets the routes up
    tabs, recs, q = routes["tabs"], routes["recs"], routes["q"]
    p = recs["ck"]["probability"].to_numpy()
    assert 0.3 < (p >= q[0]).mean() < 0.7 and tabs["ck"]["k"].between(1, tabs["ck"]["n"] - 1).any()
    for name in ("onnx", "ts", "exchange"):
        assert list(recs[name]["index"]) == list(recs["ck"]["index"])
        np.testing.assert_allclose(recs[name]["probability"], p, rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.stack(recs[name]["features"]), np.stack(recs["ck"]["features"]), atol=1e-4)
        pd.testing.assert_frame_equal(tabs[name], tabs["ck"])
    # the same injections everywhere: every record but the scores (arc photometry measured from the pixels included)
    scores = ["logit", "probability", "features"]
    pd.testing.assert_frame_equal(recs["exchange"].drop(columns=scores), recs["ck"].drop(columns=scores))
    m = pd.read_parquet(routes["small_run"] / "manifest.parquet")
    aud = m[m["split"].isin(["val", "test"])]
    assert len(aud) == 60 and len(routes["scores"]) == len(recs["ck"]) + 60   # every injection, every audited cutout
    # the import writes the audited splits' scores and features under their manifest ids (for realism, evaluate),
    # equal to the model's own scores of those cutouts
    from lensaudit.artifacts import read_predictions

    got = read_predictions(routes["tmp"] / "exchange" / "exchange" / "predictions.parquet",
                           require=("id", "probability", "features")).set_index("id").loc[aud["id"]]
    want = score_manifest(routes["small_run"] / "ck.pt", aud, CutoutStore(routes["small_run"] / "store"),
                          features=True).set_index("id").loc[aud["id"]]
    np.testing.assert_allclose(got["probability"], want["probability"], atol=1e-5)
    np.testing.assert_allclose(np.stack(got["features"]), np.stack(want["features"]), atol=1e-4)
    # and with a scored predictions table's metadata (write_predictions' keys): the scores file in the model's place
    from lensaudit.artifacts import read_artifact_meta
    from lensaudit.artifacts.kinds import PREDICTIONS
    from lensaudit.utils.io import sha256_file

    meta = read_artifact_meta(routes["tmp"] / "exchange" / "exchange" / "predictions.parquet", PREDICTIONS)
    assert meta == {"checkpoint": str(routes["tmp"] / "scores.csv"), "arch": "exchange", "n_missing": 0,
                    "checkpoint_sha256": sha256_file(routes["tmp"] / "scores.csv")}
    from lensaudit.artifacts import SelectionRunDir, read_doc
    from lensaudit.artifacts.kinds import SELECTION_SUMMARY

    rd = SelectionRunDir(routes["tmp"] / "exchange")
    assert read_doc(rd.summary, SELECTION_SUMMARY)["exchange_predictions"] == str(rd.exchange_predictions)
    assert "exchange_predictions" not in read_doc(SelectionRunDir(routes["tmp"] / "ck").summary, SELECTION_SUMMARY)


@pytest.mark.parametrize("damage, match", [
    (lambda d: d.drop(index=3), r"1 exported id\(s\) have no score"),
    (lambda d: pd.concat([d, d.iloc[[5]]], ignore_index=True), r"line \d+: id '.*' is scored twice"),
    (lambda d: d.assign(id=d["id"].where(d.index != 4, "injection:sersic:999999999")),
     r"line 6: id 'injection:sersic:999999999' is not in the export"),
    (lambda d: d.assign(probability=d["probability"].where(d.index != 7, np.nan)), r"line 9: probability .* not a number"),
    (lambda d: d.assign(probability=d["probability"].where(d.index != 2, 1.5)), r"line 4: probability 1.5 of id"),
    (lambda d: d.assign(run_id=d["run_id"].where(d.index != 0, "0123456789abcdef")), r"line 2: run_id '0123456789abcdef'"),
    (lambda d: d.drop(columns=["probability"]), r"no column\(s\) \['probability'\]"),
    (lambda d: d.assign(feature_3=d["feature_3"].where(d.index != 1, np.inf)), r"line 3: a feature of id"),
    (lambda d: d.drop(columns=["feature_2"]), r"feature columns must be feature_0"),
])
def test_a_bad_scores_file_is_refused_naming_the_line_before_anything_is_written(routes, damage, match):
    from lensaudit.cli import main

    tmp = routes["tmp"]
    before = {p: p.stat().st_mtime_ns for p in (tmp / "exchange").rglob("*") if p.is_file()}
    damage(routes["scores"]).to_csv(tmp / "bad.csv", index=False)
    from lensaudit.errors import InputError as E

    with pytest.raises(E, match=match):
        from lensaudit.config import load_config
        from lensaudit.selection.config import SelectionConfig
        from lensaudit.selection.run import run_selection

        cfg = load_config(tmp / "sel.yaml", SelectionConfig).model_copy(update={"scores": str(tmp / "bad.csv")})
        run_selection(cfg)
    assert main(["selection", "import-scores", str(tmp / "bad.csv"), "--config", str(tmp / "sel.yaml")]) == 2
    after = {p: p.stat().st_mtime_ns for p in (tmp / "exchange").rglob("*") if p.is_file()}
    assert after == before                                   # nothing written, nothing touched


def test_scores_of_another_config_are_refused(routes, small_run):
    from lensaudit.config import load_config
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.run import run_selection

    tmp = routes["tmp"]
    cfg = load_config(tmp / "sel.yaml", SelectionConfig).model_copy(update={"scores": str(tmp / "scores.csv"),
                                                                           "seed": 1})
    with pytest.raises(InputError, match=r"exchange.json: the export is run .* but this config and its inputs give"):
        run_selection(cfg)
    # without features in the file, features: true is refused before anything runs
    routes["scores"][["run_id", "id", "probability"]].to_csv(tmp / "nofeat.csv", index=False)
    cfg = load_config(tmp / "sel.yaml", SelectionConfig).model_copy(update={"scores": str(tmp / "nofeat.csv")})
    with pytest.raises(InputError, match="no feature_\\* columns"):
        run_selection(cfg)


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


def test_a_model_without_features_is_gated_in_a_stated_reference_networks_features(small_run, exported, routes,
                                                                                     tmp_path):
    import shutil

    from lensaudit.inject.records import read_injections
    from lensaudit.realism.gate import RealismConfig, run_realism
    from lensaudit.selection.run import run_selection
    from lensaudit.train.score import write_predictions
    from test_selection import _sel_cfg

    out, _ = exported
    shutil.copy(out / "model.onnx", tmp_path / "nofeat.onnx")
    spec = read_spec(out / "model.spec.yaml").model_copy(update={"features": False})
    write_spec(spec, tmp_path / "nofeat.spec.yaml")
    model = tmp_path / "nofeat.onnx"
    assert not load_scorer(model, "cpu").has_features
    with pytest.raises(InputError, match="gives no features .* set gate_reference"):
        run_selection(_sel_cfg(small_run, tmp_path / "none", checkpoint=str(model)))
    s = run_selection(_sel_cfg(small_run, tmp_path / "run", checkpoint=str(model), gate_reference=str(small_run / "ck.pt"),
                               thresholds={"probability": routes["q"], "fpr": [0.1]}))
    assert s["features_from"]["source"] == "reference" and s["features_from"]["arch"] == "bottleneck_resnet"
    rec = read_injections(tmp_path / "run", "sersic", features=True)
    ck = routes["recs"]["ck"]
    np.testing.assert_allclose(rec["probability"], ck["probability"], atol=1e-5)       # the audited model's scores
    np.testing.assert_allclose(np.stack(rec["features"]), np.stack(ck["features"]), atol=1e-5)   # the reference's
    # the gate: probabilities from the model, the real lenses' features from the same reference checkpoint
    m = pd.read_parquet(small_run / "manifest.parquet")
    aud = m[m["split"].isin(["val", "test"])]
    st = CutoutStore(small_run / "store")
    write_predictions(score_manifest(model, aud, st), tmp_path / "p.parquet", model)
    write_predictions(score_manifest(small_run / "ck.pt", aud, st, features=True), tmp_path / "ref.parquet",
                      small_run / "ck.pt")
    base = {"selection_run": str(tmp_path / "run"), "predictions": str(tmp_path / "p.parquet"),
            "manifest": str(small_run / "manifest.parquet"), "out": str(tmp_path / "real"), "store": str(small_run / "store"),
            "n_subsamples": 2, "match_bin_mag": 6.0, "probe": {"folds": 2, "n_boot": 20, "n_permutations": 5}}
    with pytest.raises(InputError, match="give reference_predictions"):
        run_realism(RealismConfig(**base))
    write_predictions(score_manifest(small_run / "ck.pt", aud, st, features=True), tmp_path / "other.parquet", model)
    with pytest.raises(InputError, match="were not scored with the selection run's reference network"):
        run_realism(RealismConfig(**base, reference_predictions=str(tmp_path / "other.parquet")))
    # the right network's scores without its features: refused naming the column
    write_predictions(score_manifest(small_run / "ck.pt", aud, st), tmp_path / "nofeat_ref.parquet", small_run / "ck.pt")
    from lensaudit.errors import LensauditError

    with pytest.raises(LensauditError, match=r"nofeat_ref.parquet: missing required column\(s\) \['features'\]"):
        run_realism(RealismConfig(**base, reference_predictions=str(tmp_path / "nofeat_ref.parquet")))
    # a predictions table made outside lensaudit (no stamp, no checkpoint SHA-256) is refused for the same reason
    pd.read_parquet(tmp_path / "ref.parquet").to_parquet(tmp_path / "external.parquet")
    with pytest.raises(InputError, match=r"were not scored with .* \(SHA-256 None vs"):
        run_realism(RealismConfig(**base, reference_predictions=str(tmp_path / "external.parquet")))
    t = run_realism(RealismConfig(**base, reference_predictions=str(tmp_path / "ref.parquet")))
    from lensaudit.artifacts import RealismDir, SelectionRunDir
    from lensaudit.realism.gate import features_note

    ff = json.loads(SelectionRunDir(tmp_path / "run").summary.read_text())["features_from"]
    note = features_note(ff)
    assert note.startswith("the reference network's (bottleneck_resnet, ck.pt") and t["features_from"].tolist() == [note] * 2
    assert json.loads(RealismDir(tmp_path / "real").report.read_text())["features_from"] == {**ff, "note": note}
    assert t["probe_auc"].between(0, 1).all() and len(t) == 2


def test_the_report_names_the_model_that_scored_the_run():
    from lensaudit.report.build import _model_note

    note = _model_note({"model": {"kind": "onnx", "path": "/x/finder.onnx", "sha256": "ab" * 32}})
    assert "ONNX model" in note and "<code>finder.onnx</code>" in note and "abababababab)" in note
    assert "offline exchange" in _model_note({"model": {"kind": "exchange", "path": "s.csv", "sha256": "0" * 64}})
    assert _model_note({}) == ""                       # runs from before the scorer interface: no line


def test_the_spark_engine_refuses_a_model_it_cannot_run(exported, small_run, tmp_path, capsys):
    from lensaudit.cli import main

    out, _ = exported
    assert main(["score", "--model", str(out / "model.onnx"), "--manifest", str(small_run / "manifest.parquet"),
                 "--store", str(small_run / "store"), "--out", str(tmp_path / "p"), "--engine", "spark"]) == 2
    assert "model.onnx is not a lensaudit checkpoint; the Spark engine scores checkpoints only" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def _the_run_records_which_scores_file_and_export_it_used(routes):
    """The summary of an imported run names its scores: kind exchange, the file, its SHA-256, the export's run id,
    whether features came with it; the ONNX route names its model file and spec."""
    import json

    from lensaudit.artifacts import SelectionRunDir
    from lensaudit.utils.io import sha256_file

    tmp = routes["tmp"]
    got = json.loads(SelectionRunDir(tmp / "exchange").summary.read_text())["model"]
    assert got == {"kind": "exchange", "path": str(tmp / "scores.csv"), "sha256": sha256_file(tmp / "scores.csv"),
                   "run_id": routes["run_id"], "features": True}
    ck = json.loads(SelectionRunDir(tmp / "ck").summary.read_text())
    assert ck["features_from"] == {"source": "model"}          # the records keep the audited model's own features
    onnx_model = json.loads(SelectionRunDir(tmp / "onnx").summary.read_text())["model"]
    assert onnx_model["kind"] == "onnx" and onnx_model["path"].endswith("model.onnx")
    assert onnx_model["sha256"] == sha256_file(onnx_model["path"]) and onnx_model["spec"]["bands"] == ["g", "r", "z"]


def test_the_gate_says_whose_features_it_compared():
    from lensaudit.realism.gate import features_note

    own = "the audited model's own penultimate features"
    assert features_note(None) == own and features_note({"source": "model"}) == own
    ref = features_note({"source": "reference", "arch": "resnet18", "path": "/x/ref.pt", "sha256": "ab" * 32})
    assert ref.startswith("the reference network's (resnet18, ref.pt") and own not in ref
