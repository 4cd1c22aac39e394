"""The trainer on a tiny backbone: losses fall, resume after a kill is exact, DDP equals one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import QUESTIONS
from safetensors.torch import load_file

import workbench
from workbench.core.errors import WorkbenchError
from workbench.train.config import TrainConfig
from workbench.train.pairs import global_batch, read_pairs
from workbench.train.trainer import LOG_FILE, RUN_CONFIG, lr_factor, step_dirs, train

BIN = Path(sys.executable).parent


@pytest.fixture
def responses(tmp_path) -> Path:
    path = tmp_path / "responses.jsonl"
    with open(path, "w") as fh:
        for q in QUESTIONS:
            fh.write(json.dumps({"prompt": q, "response": f"Here is an answer to: {q.lower()}"}) + "\n")
    return path


def options(tiny_dirs, responses, out, **extra) -> dict:
    base = dict(
        model=str(tiny_dirs["llama"]),
        teacher="self",
        responses=str(responses),
        out=str(out),
        num_thought=2,
        num_compress=3,
        max_steps=8,
        batch_size=4,
        save_every=3,
        warmup_steps=2,
        max_query_length=32,
        max_response_length=16,
        lr=1e-2,
    )
    return base | extra


def cli_args(opts: dict) -> list[str]:
    args = []
    for key, value in opts.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "llm2vec_gen_weights.safetensors"))


def test_losses_fall_and_logs_are_complete(tiny_dirs, responses, tmp_path) -> None:
    out = train(
        TrainConfig(**options(tiny_dirs, responses, tmp_path / "run", max_steps=30, save_every=10)),
        show_progress=False,
    )
    log = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))
    first, last = log[0], log[-1]
    assert last["recon_loss"] < first["recon_loss"] - 0.1  # near-uniform tiny model: small but real
    assert last["align_loss"] < first["align_loss"] / 2
    assert last["cos_diag"] > first["cos_diag"]
    for key in ("emb_norm", "teacher_norm", "cos_offdiag", "lr", "tokens"):
        assert key in last
    assert log[0]["lr"] == pytest.approx(1e-2 / 2)  # warm-up
    assert list((out / "tensorboard").iterdir())
    run = json.loads((out / RUN_CONFIG).read_text())
    assert run["train"]["max_steps"] == 30 and run["pairs"] == 10 and run["world_size"] == 1
    gen = workbench.load(out)
    assert gen.trained and gen.config.num_compress == 3
    assert [p.name for p in step_dirs(out)] == ["step-000020", "step-000030"]  # keeps the last two


def test_only_tokens_and_heads_change(tiny_dirs, responses, tmp_path) -> None:
    before = workbench.load(str(tiny_dirs["llama"]), teacher="self", num_thought=2, num_compress=3, seed=42)
    out = train(
        TrainConfig(**options(tiny_dirs, responses, tmp_path / "run", max_steps=3)), show_progress=False
    )
    after = workbench.load(out)
    assert not torch.equal(before.special, after.special)
    assert not torch.equal(before.alignment.weight, after.alignment.weight)
    base = before.backbone.model.state_dict()
    assert all(torch.equal(v, after.backbone.model.state_dict()[k]) for k, v in base.items())


def test_resume_after_kill_matches_uninterrupted(tiny_dirs, responses, tmp_path) -> None:
    opts = options(tiny_dirs, responses, tmp_path / "x", max_steps=120, save_every=10)
    whole = train(TrainConfig(**(opts | {"out": str(tmp_path / "whole")})), show_progress=False)
    killed = tmp_path / "killed"
    cmd = [str(BIN / "workbench"), "train", *cli_args(opts | {"out": str(killed)}), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-000020").exists() and proc.poll() is None:
        assert time.time() < deadline, "training never reached step 20"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "llm2vec_gen_weights.safetensors").exists()
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(whole), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (killed / LOG_FILE).read_text().splitlines()]
    assert steps == list(range(1, 121))  # each step logged once


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_distributed_two_processes_equal_one(tiny_dirs, responses, tmp_path) -> None:
    if shutil.which("accelerate", path=str(BIN)) is None:
        pytest.skip("accelerate's launcher is not installed")
    opts = options(tiny_dirs, responses, tmp_path / "single", max_steps=4, batch_size=4)
    single = train(TrainConfig(**opts), show_progress=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = tmp_path / "ddp"

    def launch() -> subprocess.CompletedProcess:
        shutil.rmtree(ddp, ignore_errors=True)
        command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), "-m", "workbench", "train",
                   *cli_args(opts | {"out": str(ddp)}), "--quiet"]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    proc = launch()
    if proc.returncode != 0 and any(m in proc.stderr.lower() for m in ("gloo", "sigabrt")):
        proc = launch()  # one retry: gloo on loopback can fail to connect or abort on a busy machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ddp / RUN_CONFIG).read_text())["world_size"] == 2
    a, b = weights(single), weights(ddp)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    assert not torch.equal(a["special"], weights(single / "checkpoints" / "step-000003")["special"])


def test_existing_run_needs_resume(tiny_dirs, responses, tmp_path) -> None:
    opts = options(tiny_dirs, responses, tmp_path / "run", max_steps=2)
    train(TrainConfig(**opts), show_progress=False)
    with pytest.raises(WorkbenchError, match="already holds a training run"):
        train(TrainConfig(**opts), show_progress=False)
    with pytest.raises(WorkbenchError, match="changed options"):
        train(TrainConfig(**(opts | {"lr": 1e-3})), resume=True, show_progress=False)
    # more steps on resume is allowed and continues from step 2
    out = train(TrainConfig(**(opts | {"max_steps": 4})), resume=True, show_progress=False)
    steps = [json.loads(line)["step"] for line in (out / LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_teacher_embeddings_are_cached(tiny_dirs, responses, tmp_path) -> None:
    opts = options(tiny_dirs, responses, tmp_path / "run", max_steps=1, teacher="minilm")
    out = train(TrainConfig(**opts), show_progress=False)
    cache = out / "teacher_embeddings.safetensors"
    assert load_file(str(cache))["teacher"].shape == (10, 384)
    stamp = cache.stat().st_mtime_ns
    train(TrainConfig(**(opts | {"max_steps": 2})), resume=True, show_progress=False)
    assert cache.stat().st_mtime_ns == stamp


def test_config_file_then_flags(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("lr: 0.001\nbatch_size: 8\nnum_thought: 0\n")
    cfg = TrainConfig.build(path, batch_size=16, lr=None)
    assert (cfg.lr, cfg.batch_size, cfg.num_thought, cfg.num_compress) == (0.001, 16, 0, 10)
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(WorkbenchError, match="unknown options"):
        TrainConfig.build(path)
    with pytest.raises(WorkbenchError, match="does not split"):
        TrainConfig(batch_size=10, grad_accum=4).validate()
    with pytest.raises(WorkbenchError, match="max_steps must be positive"):
        TrainConfig(max_steps=0).validate()
    with pytest.raises(WorkbenchError, match=r"past schedule_steps 100.*--schedule-steps to at least 200"):
        TrainConfig(max_steps=200, schedule_steps=100).validate()


def test_schedule_and_data_order() -> None:
    assert lr_factor(0, 100, 20_000) == pytest.approx(0.01)
    assert lr_factor(99, 100, 20_000) == 1.0
    assert lr_factor(10_050, 100, 20_000) == pytest.approx(0.5)
    seen = [i for step in range(5) for i in global_batch(step, 10, 4, seed=1)]
    assert sorted(seen[:10]) == list(range(10))  # the first epoch covers every pair once
    assert global_batch(3, 10, 4, 1) == global_batch(3, 10, 4, 1)


def test_bad_responses_file(tmp_path) -> None:
    with pytest.raises(WorkbenchError, match="does not exist"):
        read_pairs(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    with pytest.raises(WorkbenchError, match="lacks string fields"):
        read_pairs(bad)


def test_init_from_continues_a_checkpoint(tiny_dirs, responses, tmp_path) -> None:
    first = train(
        TrainConfig(**options(tiny_dirs, responses, tmp_path / "a", max_steps=3)), show_progress=False
    )
    # zero steps of learning rate: the continued run must start from (and keep) the first run's weights
    second = train(
        TrainConfig(
            **options(tiny_dirs, responses, tmp_path / "b", max_steps=1, init_from=str(first), lr=1e-12)
        ),
        show_progress=False,
    )
    a, b = weights(first), weights(second)
    for key in ("special", "reconstruction.weight", "alignment.weight"):
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    run = json.loads((second / RUN_CONFIG).read_text())
    assert run["init_from"]["steps"] == 3 and len(run["init_from"]["weights_sha256"]) == 64
    assert workbench.load(second).trained
    with pytest.raises(WorkbenchError, match="num_compress"):
        train(
            TrainConfig(
                **options(tiny_dirs, responses, tmp_path / "c", init_from=str(first), num_compress=4)
            ),
            show_progress=False,
        )


def test_only_whole_responses_end_with_eos(tiny_dirs) -> None:
    from workbench.core.backbone import load_backbone
    from workbench.core.losses import response_tokens

    tokenizer = load_backbone(str(tiny_dirs["llama"])).tokenizer
    short, long = "ok", "a much longer answer than the cap allows"
    rows = response_tokens(tokenizer, [short, long], max_tokens=6, eos_id=99)
    whole = tokenizer(short, add_special_tokens=False)["input_ids"]
    assert len(whole) < 6 and rows[0] == [*whole, 99]  # the answer ended: the decoder learns to stop
    assert len(rows[1]) == 6 and 99 not in rows[1]  # only the cap ended it: no stop taught


def test_bf16_mixed_precision_trains_float32_weights(tiny_dirs, responses, tmp_path) -> None:
    opts = options(tiny_dirs, responses, tmp_path / "fp32", max_steps=6, save_every=6)
    full = train(TrainConfig(**opts), show_progress=False)
    mixed = train(
        TrainConfig(**(opts | {"out": str(tmp_path / "bf16"), "mixed_precision": "bf16"})),
        show_progress=False,
    )
    log32 = [json.loads(line) for line in (full / LOG_FILE).read_text().splitlines()]
    log16 = [json.loads(line) for line in (mixed / LOG_FILE).read_text().splitlines()]
    # the same start and data: the first step's losses agree to bfloat16 rounding, and training moves
    assert log16[0]["recon_loss"] == pytest.approx(log32[0]["recon_loss"], rel=0.02)
    assert log16[-1]["align_loss"] < log16[0]["align_loss"]
    w16, w32 = weights(mixed), weights(full)
    assert all(w16[k].dtype == torch.float32 for k in w16)  # trainable weights are not rounded
    assert not torch.equal(w16["special"], w32["special"])  # ... but were trained under autocast
    assert workbench.load(mixed).config.dtype == "float32"  # loads against the float32 backbone
    assert json.loads((mixed / RUN_CONFIG).read_text())["train"]["mixed_precision"] == "bf16"
    # an older run's config without the option resumes as "no"
    run = json.loads((full / RUN_CONFIG).read_text())
    del run["train"]["mixed_precision"]
    (full / RUN_CONFIG).write_text(json.dumps(run))
    train(TrainConfig(**(opts | {"max_steps": 7})), resume=True, show_progress=False)
    assert json.loads((full / LOG_FILE).read_text().splitlines()[-1])["step"] == 7


def test_mixed_precision_errors() -> None:
    with pytest.raises(WorkbenchError, match=r"unknown mixed precision 'fp16'.*one of no, bf16"):
        TrainConfig(mixed_precision="fp16").validate()


def test_training_options_default_to_the_models_config() -> None:
    from workbench.core.config import GenConfig

    cfg, model = TrainConfig(), GenConfig()
    assert (cfg.num_thought, cfg.num_compress) == (model.num_thought, model.num_compress)
    assert (cfg.max_query_length, cfg.teacher, cfg.dtype) == (model.max_length, model.teacher, model.dtype)


def test_optimizer_state_round_trips_through_the_run_folder(tmp_path) -> None:
    from workbench.train.run_dir import append_log, flatten_optimizer, trim_log, unflatten_optimizer

    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=0.1)
    sum(p.sum() for p in params).backward()
    opt.step()
    tensors, rest = flatten_optimizer(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(rest)  # the rest is plain JSON
    again = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.1)
    again.load_state_dict(unflatten_optimizer(tensors, json.loads(json.dumps(rest))))
    for a, b in zip(opt.state_dict()["state"].values(), again.state_dict()["state"].values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])
    for step in (1, 2, 3):
        append_log(tmp_path, {"step": step, "loss": 1.0 / step})
    trim_log(tmp_path, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / LOG_FILE).read_text().splitlines()] == [1, 2]
