"""One scorer interface for every lens finder: raw g, r, z cutouts in nanomaggies in, logits out.

``load_scorer(path)`` picks the implementation from the file:

- a lensaudit checkpoint (``*.pt`` written by ``lensaudit train``): the model rebuilt from its architecture and
  weights (``torch.load(weights_only=True)``), fed with the preprocessing stored in it;
- ``*.onnx``: an ONNX model run by onnxruntime (its CUDA provider where present and asked for), any framework;
- ``*.ts`` (or a ``*.pt`` that is a TorchScript archive): a TorchScript module (``torch.jit.load``).

The last two read their :class:`~lensaudit.scoring.spec.ScorerSpec` from ``<model>.spec.yaml``. Loading runs no
pickled Python (ONNX protobuf; TorchScript archives hold code TorchScript compiles, not Python objects). Before any
scoring the model is checked against its spec: its declared input shape (ONNX), and the outputs of a probe batch of
two sky-noise stamps (shape, finite, in [0, 1] for a probability, the features' shape). Every batch scored later is
checked the same way; a failure names the model and the first offending row.

Every scorer returns logits as float64 (a probability output is turned into its logit, clipped at 1e-15 from 0 and
1, so ``1 / (1 + exp(-logit))`` gives the model's probability back to 1e-15) and, when asked and provided, the
penultimate-layer features as float32.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from lensaudit.data.preprocess import preprocess
from lensaudit.errors import LensauditError
from lensaudit.scoring.spec import CUTOUT_BANDS, ScorerSpec, read_spec, spec_path
from lensaudit.utils.io import sha256_file

log = logging.getLogger(__name__)

#: Probabilities are kept this far from 0 and 1 when turned into logits.
PROB_EPS = 1e-15


class ScorerError(LensauditError, ValueError):
    """A model cannot be loaded, does not fit its spec, or gave an output outside it."""


def probe_cutouts(n: int = 2, seed: int = 0) -> np.ndarray:
    """``n`` raw stamps of sky noise (0.01 nanomaggies rms, the order of DR10's r-band sky), float32 (n, 3, 101, 101):
    the probe batch every model is run on before it scores anything."""
    from lensaudit.survey.constants import CUTOUT_SIZE

    return np.random.default_rng(seed).normal(0.0, 0.01, (n, 3, CUTOUT_SIZE, CUTOUT_SIZE)).astype(np.float32)


class Scorer:
    """Base class: preprocessing per the spec, batching, output checks, logits. Subclasses run the model
    (:meth:`_run`: a preprocessed float32 batch in, the raw first output and the features out)."""

    kind: ClassVar[str] = "?"

    def __init__(self, path: str | os.PathLike, spec: ScorerSpec, batch_size: int = 512):
        if batch_size < 1:
            raise ScorerError(f"model {path}: batch_size must be at least 1, got {batch_size}")
        self.path, self.spec, self.batch_size = Path(path), spec, int(batch_size)

    # -- what subclasses provide ------------------------------------------------------------------------------------
    def _run(self, x: np.ndarray, features: bool) -> tuple[np.ndarray, np.ndarray | None]:  # pragma: no cover
        raise NotImplementedError

    # -- the interface ----------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.kind}:{self.path.name}"

    @property
    def has_features(self) -> bool:
        return self.spec.features

    def identity(self) -> dict:
        """What a product records about the model that scored it: kind, path, SHA-256 of the file, the spec."""
        return {"kind": self.kind, "path": str(self.path), "sha256": sha256_file(self.path),
                "spec": self.spec.model_dump(mode="json")}

    def preprocess(self, cutouts: np.ndarray) -> np.ndarray:
        """The model's input for raw cutouts (N, 3, 101, 101) in nanomaggies: its bands, in its order, normalised."""
        a = np.asarray(cutouts)
        want = (len(CUTOUT_BANDS), self.spec.stamp_size, self.spec.stamp_size)
        if a.ndim != 4 or a.shape[1:] != want:
            raise ScorerError(f"model {self.path}: expects raw cutouts (N, {', '.join(map(str, want))}) in nanomaggies "
                              f"(bands {', '.join(CUTOUT_BANDS)}), got shape {a.shape}")
        if tuple(self.spec.bands) != CUTOUT_BANDS:
            a = a[:, self.spec.band_index]
        return preprocess(a, self.spec.preprocess)

    def score(self, cutouts: np.ndarray, features: bool = False,
              cache: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (float64, N) and, with ``features``, the penultimate features (float32, (N, F)) of raw cutouts.

        ``cache`` (a dict the caller keeps for one set of cutouts) shares the preprocessed input between scorers
        with the same bands and preprocessing (the members of an ensemble)."""
        if features and not self.has_features:
            raise ScorerError(f"model {self.path}: its spec declares no features output, and features were asked for")
        key = (tuple(self.spec.bands), self.spec.preprocess)
        x = cache.get(key) if cache is not None else None
        if x is None:
            x = self.preprocess(cutouts)
            if cache is not None:
                cache[key] = x
        outs, feats = [], []
        for lo in range(0, len(x), self.batch_size):
            o, f = self._run(np.ascontiguousarray(x[lo : lo + self.batch_size]), features)
            outs.append(self._check(o, f, len(x[lo : lo + self.batch_size]), lo, features))
            if features:
                feats.append(np.asarray(f, np.float32))
        y = np.concatenate(outs) if outs else np.zeros(0)
        ft = (np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)) if features else None
        return self._logit(y), ft

    def check(self) -> Scorer:
        """Run the probe batch (:func:`probe_cutouts`) through every check; returns ``self``."""
        self.score(probe_cutouts(), features=self.has_features)
        return self

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _check(self, o, f, n: int, offset: int, features: bool) -> np.ndarray:
        o = np.asarray(o, np.float64)
        if o.shape not in ((n,), (n, 1)):
            raise ScorerError(f"model {self.path}: output shape {o.shape} for a batch of {n}; its spec wants one "
                              f"{self.spec.output} per cutout, (N,) or (N, 1)")
        o = o.reshape(n)
        bad = ~np.isfinite(o)
        if self.spec.output == "probability":
            bad |= (o < 0) | (o > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScorerError(f"model {self.path}: row {offset + i} of the scored cutouts gave {o[i]!r}, outside its "
                              f"spec's output ({self.spec.output}{' in [0, 1]' if self.spec.output == 'probability' else ', finite'})")
        if features:
            fa = None if f is None else np.asarray(f)
            if fa is None or fa.ndim != 2 or fa.shape[0] != n:
                raise ScorerError(f"model {self.path}: its features output has shape "
                                  f"{None if fa is None else fa.shape} for a batch of {n}; the spec wants (N, F)")
        return o

    def _logit(self, y: np.ndarray) -> np.ndarray:
        if self.spec.output == "logit":
            return y
        p = np.clip(y, PROB_EPS, 1 - PROB_EPS)
        return np.log(p) - np.log1p(-p)


class CheckpointScorer(Scorer):
    """A checkpoint written by ``lensaudit train`` (its architecture, weights and preprocessing)."""

    kind = "checkpoint"

    def __init__(self, path: str | os.PathLike, device: str = "auto", batch_size: int = 512, amp: bool = True):
        from lensaudit.train.checkpoint import load_model
        from lensaudit.train.loop import pick_device

        self.model, pre, self.ck = load_model(path)
        super().__init__(path, ScorerSpec(preprocess=pre, output="logit", features=True,
                                          description=f"lensaudit checkpoint ({self.ck['arch']})"), batch_size)
        self.device, self.amp = pick_device(device), amp
        self.model.to(self.device).eval()

    @property
    def pre(self):
        return self.spec.preprocess

    def _run(self, x, features):
        import torch

        from lensaudit.train.score import forward

        return forward(self.model, [torch.from_numpy(x)], self.device, features, self.amp)


class TorchScriptScorer(Scorer):
    """A TorchScript module (``torch.jit.save``): output a tensor, or a tuple (scores, features)."""

    kind = "torchscript"

    def __init__(self, path: str | os.PathLike, spec: ScorerSpec, device: str = "auto", batch_size: int = 512):
        import torch

        from lensaudit.train.loop import pick_device

        super().__init__(path, spec, batch_size)
        self.device = pick_device(device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch 2.10+ marks TorchScript deprecated; it still runs
                self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:  # torch raises several types for a foreign or corrupt file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ScorerError(f"model {path}: not a readable TorchScript file ({first})") from None

    def _run(self, x, features):
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(x).to(self.device))
        if isinstance(out, (tuple, list)):
            return out[0].float().cpu().numpy(), (out[1].float().cpu().numpy() if features and len(out) > 1 else None)
        return out.float().cpu().numpy(), None


class OnnxScorer(Scorer):
    """An ONNX model through onnxruntime: first input the batch, first output the scores, second the features."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike, spec: ScorerSpec, device: str = "auto", batch_size: int = 512,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ScorerError(f"model {path}: ONNX models need onnxruntime (pip install 'lensaudit[onnx]')") from None
        super().__init__(path, spec, batch_size)
        have = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in have:
            raise ScorerError(f"model {path}: device 'cuda' asked for, but onnxruntime has no CUDA provider here")
        providers = (["CUDAExecutionProvider"] if device in ("auto", "cuda") and "CUDAExecutionProvider" in have
                     else []) + ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for a missing, corrupt or invalid file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ScorerError(f"model {path}: not a loadable ONNX model ({first})") from None
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name, self.output_names = ins[0].name, [o.name for o in outs]
        self.input_type = np.float64 if ins[0].type == "tensor(double)" else np.float32
        shape = list(ins[0].shape)
        want = [None, len(spec.bands), spec.input_size, spec.input_size]
        if len(shape) != 4 or any(isinstance(s, int) and w is not None and s != w
                                  for s, w in zip(shape, want, strict=True)):
            raise ScorerError(f"model {path}: input {ins[0].name!r} has shape {shape}; its spec gives (N, "
                              f"{len(spec.bands)} bands {'/'.join(spec.bands)}, {spec.input_size}, {spec.input_size})")
        if spec.features and len(outs) < 2:
            raise ScorerError(f"model {path}: its spec declares a features output, but the model has one output only")

    def _run(self, x, features):
        names = self.output_names[:2] if features else self.output_names[:1]
        res = self.session.run(names, {self.input_name: x.astype(self.input_type, copy=False)})
        return res[0], (res[1] if features else None)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with ``<name>/code/`` entries (a ``torch.save`` checkpoint has none)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_scorer(path: str | os.PathLike, device: str = "auto", batch_size: int = 512,
                spec: str | os.PathLike | None = None, check: bool = True) -> Scorer:
    """The scorer of a model file (see the module docstring); ``spec`` overrides ``<model>.spec.yaml``.
    With ``check`` (the default) the probe batch runs through every check first."""
    path = Path(path)
    if not path.is_file():
        raise ScorerError(f"model {path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        sc: Scorer = OnnxScorer(path, read_spec(spec or spec_path(path)), device, batch_size)
    elif suffix in (".ts", ".torchscript") or (suffix == ".pt" and _is_torchscript(path)):
        sc = TorchScriptScorer(path, read_spec(spec or spec_path(path)), device, batch_size)
    else:
        if spec is not None:
            raise ScorerError(f"model {path}: a lensaudit checkpoint carries its own preprocessing; drop the spec {spec}")
        sc = CheckpointScorer(path, device, batch_size)
        return sc  # trained here: its architecture fits its preprocessing by construction
    return sc.check() if check else sc

