"""Multi-process training (DistributedDataParallel under torchrun, gloo on CPU) gives one process's weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lensaudit.data.dataset import step_plan
from lensaudit.train.config import TrainConfig
from lensaudit.train.loop import train

pytest.importorskip("torch.distributed")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available in this build", allow_module_level=True)


def test_step_plan_deals_every_micro_batch_of_one_process_to_exactly_one_rank():
    order = list(range(100))[::-1]
    single = step_plan(order, 8, 3)
    assert [len(s) for s in single] == [3, 3, 3, 3, 1]            # 13 micro-batches of 8 (the last of 4), steps of 3
    assert single[0][0] == order[:8] and single[-1][-1] == order[96:]
    for world in (2, 3, 5):
        ranks = [step_plan(order, 8, 3, world, r) for r in range(world)]
        for s, step in enumerate(single):
            dealt = sorted((j % world, tuple(mb)) for j, mb in enumerate(step))
            got = sorted((r, tuple(mb)) for r in range(world) for mb in ranks[r][s])
            assert dealt == got                                       # the same micro-batches, round-robin
        covered = sorted(i for r in ranks for step in r for mb in step for i in mb)
        assert covered == sorted(order)
    assert step_plan(order, 8, 3, 5, 4)[-1] == []                    # a rank can have nothing in a short last step
    with pytest.raises(ValueError, match="rank 2"):
        step_plan(order, 8, 3, 2, 2)


def _cfg(tiny, out: Path, **kw) -> dict:
    _, _, mpath = tiny
    base = {"manifest": str(mpath), "store": str(tiny[0].root), "out": str(out), "arch": "bottleneck_resnet",
            "model_kwargs": {"stages": [[16, 8, 1, 1], [32, 8, 1, 2]], "stem": 16},
            "preprocess": {"crop": 32}, "epochs": 2, "batch_size": 16, "lr": 3e-3,
            "schedule": {"kind": "cosine"}, "seed": 3, "device": "cpu", "threads": 1, "checkpoint_every": 1}
    base.update(kw)
    return base


def _torchrun(cfg: dict, tmp_path: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    path = tmp_path / f"{Path(cfg['out']).name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    script = Path(sys.executable).parent / "lensaudit"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LENSAUDIT_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           str(script), "train", "--config", str(path)],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("effective_batch", [32, 48])
def test_two_gloo_processes_give_the_weights_of_one(tiny, tmp_path, effective_batch):
    """32: each rank one micro-batch of 16 per step. 48: three micro-batches per step, so the ranks do
    unequal work and in the short last step of an epoch (64 samples) rank 1 has nothing to do."""
    if not (Path(sys.executable).parent / "lensaudit").exists():
        pytest.skip("the lensaudit console script is not installed next to this interpreter")
    one = train(TrainConfig.model_validate(_cfg(tiny, tmp_path / "one", effective_batch=effective_batch)))
    res = _torchrun(_cfg(tiny, tmp_path / "two", effective_batch=effective_batch), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    params = [k for k in a["model"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and a["model"].keys() == b["model"].keys()
    for k in params:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    # the weights moved (the comparison is not of two untouched initialisations)
    init = torch.load(tmp_path / "one" / "epoch_0001.pt", weights_only=True)["model"]
    assert any(not torch.equal(init[k], a["model"][k]) for k in params)
    # rank 0 alone wrote the records; they count every sample of both ranks
    info = json.loads((tmp_path / "two" / "run_info.json").read_text())
    assert info["summary"]["processes"] == 2 and one["processes"] == 1
    hist = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1]
    assert hist[0]["train_loss"] == pytest.approx(one["history"][0]["train_loss"], rel=1e-5)
