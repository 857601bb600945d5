"""``lensaudit export-model``: a project checkpoint as ONNX and TorchScript, with its spec, checked against itself.

Both files hold the same two-output network: ``logit`` (N,) and ``features`` (N, F), the input of the final Linear
layer (what the realism gate embeds), for a preprocessed float32 batch (N, 3, S, S), with the batch size free.
``<name>.spec.yaml`` carries the checkpoint's preprocessing, so ``load_scorer`` feeds either file exactly as the
checkpoint. The export is verified before it is kept: the checkpoint, the ONNX model and the TorchScript module
score the same probe cutouts (sky noise and the bundled real DR10 cutouts where present) and the largest
differences of probability and features are written to ``<name>.export.json``; a difference above ``tolerance``
(1e-5 in probability) is an error and nothing is written.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.scoring.scorers import CheckpointScorer, load_scorer, probe_cutouts
from lensaudit.scoring.spec import ScorerSpec, write_spec
from lensaudit.utils.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

#: ONNX opset of the exported models (onnxruntime 1.17 and later run it).
OPSET = 17


def _two_outputs(model):
    """``model`` (one logit from its final Linear layer) as a module returning ``(logit (N,), features (N, F))``."""
    import torch
    from torch import nn

    from lensaudit.models import classifier_layer

    fc = classifier_layer(model)
    body = copy.deepcopy(model).eval()
    name = next(n for n, m in model.named_modules() if m is fc)
    parent = body.get_submodule(name.rpartition(".")[0]) if "." in name else body
    setattr(parent, name.rpartition(".")[2], nn.Identity())

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = body, copy.deepcopy(fc)

        def forward(self, x: torch.Tensor):
            f = self.body(x)
            return self.fc(f).squeeze(1), f

    return TwoOutputs().eval()


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, name: str = "model",
                 tolerance: float = 1e-5, cutouts: np.ndarray | None = None) -> dict:
    """Write ``<out>/<name>.onnx``, ``<name>.ts``, ``<name>.spec.yaml`` and ``<name>.export.json``; returns the report.

    ``cutouts`` (raw, (N, 3, 101, 101), nanomaggies) are scored by all three for the check, beside the probe stamps."""
    import torch

    ck = CheckpointScorer(checkpoint, device="cpu", amp=False)
    spec = ScorerSpec(preprocess=ck.pre, output="logit", features=True,
                      description=f"exported from lensaudit checkpoint {Path(checkpoint).name} ({ck.ck['arch']})")
    net = _two_outputs(ck.model.cpu())
    x_raw = probe_cutouts(4) if cutouts is None else np.concatenate([probe_cutouts(4), np.asarray(cutouts, np.float32)])
    x = torch.from_numpy(ck.preprocess(x_raw))
    with torch.no_grad():
        lg, f = net(x)
    ref_lg, ref_f = ck.score(x_raw, features=True)
    if not np.allclose(lg.numpy(), ref_lg, rtol=0, atol=1e-4):
        raise InputError(f"checkpoint {checkpoint}: the {ck.ck['arch']!r} model does something after its final Linear "
                         f"layer, so it cannot be split into logit and features; not exported")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's exporter deprecation and tracer notes name its internals only
            torch.onnx.export(net, (x[:2],), str(tmp / f"{name}.onnx"), dynamo=False, opset_version=OPSET,
                              input_names=["cutouts"], output_names=["logit", "features"],
                              dynamic_axes={"cutouts": {0: "n"}, "logit": {0: "n"}, "features": {0: "n"}})
            ts = torch.jit.trace(net, x[:2], check_trace=False)
            torch.jit.save(ts, str(tmp / f"{name}.ts"))
        write_spec(spec, tmp / f"{name}.spec.yaml")
        p_ref = 1 / (1 + np.exp(-ref_lg))
        report = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint), "arch": ck.ck["arch"],
                  "opset": OPSET, "n_checked": len(x_raw), "tolerance_probability": tolerance, "files": {}}
        for kind, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):
            sc = load_scorer(tmp / f"{name}{suffix}", device="cpu")
            lg2, f2 = sc.score(x_raw, features=True)
            dp = float(np.max(np.abs(1 / (1 + np.exp(-lg2)) - p_ref)))
            df = float(np.max(np.abs(f2 - ref_f)) / max(float(np.max(np.abs(ref_f))), 1e-30))
            report["files"][kind] = {"file": f"{name}{suffix}", "max_abs_probability_difference": dp,
                                     "max_relative_feature_difference": df}
            if dp > tolerance:
                raise InputError(f"checkpoint {checkpoint}: its {kind} export differs by {dp:.2e} in probability "
                                 f"(tolerance {tolerance:g}); not exported")
        for f in tmp.iterdir():
            report["files"].get({".onnx": "onnx", ".ts": "torchscript"}.get(f.suffix, ""), {})["sha256"] = sha256_file(f)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        atomic_write_json(out / f"{name}.export.json", report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (%s)", checkpoint, out, ", ".join(
        f"{k}: max |dp| {v['max_abs_probability_difference']:.1e}" for k, v in report["files"].items()))
    return report
