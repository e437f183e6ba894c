"""Training: faithful step (conformance gradients), exact resume, checkpoints, ablations, bad input."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import re
import signal
import sys
import types

import numpy as np
import pytest
import torch

from ipassr.models.checkpoint import load_network, reference_to_ours
from ipassr.errors import CheckpointError, IpassrError
from ipassr.inference.api import StereoSR
from ipassr.train.config import TrainConfig
from ipassr.train.data import (ArrayPatches, Augmentation, EpochBatches, PatchDataset, epoch_plan,
                               make_loader)
from ipassr.train.interrupts import interrupts_blocked_while_workers_start
from ipassr.train import trainer as training
from ipassr.train.trainer import Trainer, TrainingDiverged, read_checkpoint
from ipassr.train.run import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from ipassr.models.registry import network_options

from training_helpers import CONFORMANCE, TINY, cones_patches, one_thread  # noqa: F401


@pytest.fixture(scope="module")
def cones_x2() -> tuple[np.ndarray, ...]:
    return cones_patches(2)


def tiny_source(arrays, count: int = 6, scale: int = 2) -> ArrayPatches:
    return ArrayPatches(*(a[:count] for a in arrays), scale=scale, name="cones")


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


def state_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}


# ----------------------------------------------------------------------------- faithful step

@pytest.mark.parametrize("scale", [2, 4])
def test_one_training_step_reproduces_conformance_losses_and_gradients(tmp_path, scale):
    """The trainer's step from the reference checkpoint on the reference batch = reference numbers."""
    fixture = np.load(CONFORMANCE / f"x{scale}.npz")
    expected = json.loads((CONFORMANCE / f"x{scale}.json").read_text())["losses"]
    to_uint8 = [np.round(fixture[k].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
                for k in ("LR_left", "LR_right", "HR_left", "HR_right")]
    source = ArrayPatches(*to_uint8, scale=scale, name="conformance")
    config = TrainConfig(scale=scale, batch_size=2, hflip=False, vflip=False, workers=0,
                         tensorboard=False)
    trainer = Trainer(config, tmp_path / "run", source=source, progress=False,
                      init_weights=CONFORMANCE / f"x{scale}.pth.tar")
    inputs = next(trainer.batches())
    order = [int(i) for i in torch.argsort(inputs[0].flatten(1).sum(1))]
    reference_order = [int(i) for i in np.argsort(fixture["LR_left"].reshape(2, -1).sum(1))]
    assert sorted(order) == sorted(reference_order)
    values = trainer.train_step(inputs)
    for ours, theirs in (("sr", "loss_SR"), ("photo", "loss_photo"), ("smooth", "loss_smooth"),
                         ("cycle", "loss_cycle"), ("cons", "loss_cons"), ("total", "loss_total")):
        assert values[ours] == pytest.approx(expected[theirs], rel=1e-5, abs=1e-7), ours
    params = dict(trainer.network.named_parameters())
    grads = [k for k in fixture.files if k.startswith("grad.")]
    assert grads
    for key in grads:
        grad = params[reference_to_ours(key[len("grad."):])].grad
        torch.testing.assert_close(grad, torch.from_numpy(fixture[key]), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- resume

def test_resume_gives_the_same_weights_as_training_straight(tmp_path, cones_x2):
    """3 steps straight == 1 step, checkpoint, new Trainer, 2 more (across an epoch boundary)."""
    source = tiny_source(cones_x2, count=4)  # 2 steps per epoch
    config = tiny_config(lr_step_epochs=1)  # the lr halves at the epoch boundary
    straight = Trainer(config, tmp_path / "straight", source=source, progress=False)
    assert straight.fit(max_steps=3).status == "budget"

    first = Trainer(config, tmp_path / "resumed", source=source, progress=False)
    first.fit(max_steps=1)
    assert read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["global_step"] == 1
    second = Trainer(config, tmp_path / "resumed", source=source, resume=True, progress=False)
    assert (second.epoch, second.step_in_epoch, second.global_step) == (0, 1, 1)
    second.fit(max_steps=3)

    assert straight.optimizer.param_groups[0]["lr"] == second.optimizer.param_groups[0]["lr"] == 1e-4
    a, b = state_of(straight), state_of(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    # the log of the resumed run has each step once, in order
    steps = [r["global_step"] for r in map(json.loads, (tmp_path / "resumed" / "log.jsonl")
                                            .read_text().splitlines()) if r["event"] == "step"]
    assert steps == [1, 2, 3]


def test_resume_restores_the_checkpoints_rng_state(tmp_path, cones_x2):
    """Training draws nothing from the global RNG after its start today; a draw added later (here
    by hand, before the checkpoint) must come back on resume, not the fresh run's seeded state."""
    source = tiny_source(cones_x2, count=4)
    first = Trainer(tiny_config(), tmp_path / "run", source=source, progress=False)
    seeded = torch.get_rng_state()  # what a new Trainer leaves, resumed or not, before restoring
    torch.rand(5)
    first.save_checkpoint()
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["rng"]["torch"]
    assert not torch.equal(saved, seeded)
    Trainer(tiny_config(), tmp_path / "run", source=source, resume=True, progress=False)
    assert torch.equal(torch.get_rng_state(), saved)


def test_resume_keeps_the_best_score_and_names_what_it_cannot_read(tmp_path, cones_x2):
    """The best validation so far survives a resume (else a worse one would overwrite best.*);
    the checkpoint says what it holds; a missing or damaged one is refused, naming the file."""
    source = tiny_source(cones_x2, count=4)
    empty = tmp_path / "empty"
    with pytest.raises(IpassrError, match=rf"^{re.escape(str(empty))}: nothing to resume "
                                          r"\(no checkpoints/last\.pt\)$"):
        Trainer(tiny_config(), empty, source=source, resume=True, progress=False)
    root = tmp_path / "run"
    first = Trainer(tiny_config(), root, source=source, progress=False)
    first.best = {"stereo_psnr": 30.5, "global_step": 1}
    first.save_checkpoint()
    last = root / "checkpoints" / "last.pt"
    payload = read_checkpoint(last)
    assert (payload["version"], payload["architecture"], payload["init_sha256"]) == (
        CHECKPOINT_VERSION, "ipassr-v1", None)
    assert payload["model_config"] == network_options(first.network)
    resumed = Trainer(tiny_config(), root, source=source, resume=True, progress=False)
    assert (resumed.best, resumed.resume_notes) == (first.best, [])
    damages = {"unknown config key 'lrr'": lambda p: p["config"].update(lrr=1),
               "upsampler": lambda p: p["model"].update({"upsampler.to_rgb.weight": torch.zeros(1)}),
               "optimizer state does not fit": lambda p: p.update(optimizer={})}
    for message, damage in damages.items():
        broken = read_checkpoint(last)
        damage(broken)
        torch.save(broken, last)
        with pytest.raises(IpassrError, match=rf"^{re.escape(str(last))}: .*{message}"):
            Trainer(tiny_config(), root, source=source, resume=True, progress=False)
        torch.save(payload, last)
    del payload["best"]  # a checkpoint from before validations were kept: no best yet
    torch.save(payload, last)
    assert Trainer(tiny_config(), root, source=source, resume=True, progress=False).best == {}


def test_resume_notes_a_replaced_init_file_only_when_it_was_asked_for(tmp_path, cones_x2):
    """The config names init weights replaced since the run started from them: a resume that
    passes them again (in its overrides) is told so; one that does not pass them is not."""
    from ipassr.models.checkpoint import save_weights
    from ipassr.models.ipassr import IPASSR

    source, init = tiny_source(cones_x2, count=4), tmp_path / "init.safetensors"
    torch.manual_seed(1)
    save_weights(IPASSR(2), init)
    config = tiny_config(init_weights=str(init))
    Trainer(config, tmp_path / "run", source=source, progress=False).save_checkpoint()
    save_weights(IPASSR(2), init)  # other random weights, same path
    asked, not_asked = (Trainer(config, tmp_path / "run", source=source, resume=True,
                                overrides=overrides, progress=False)
                        for overrides in ({"init_weights"}, set()))
    assert len(asked.resume_notes) == 1 and "not the weights this run started from" in \
        asked.resume_notes[0]
    assert not_asked.resume_notes == []


def test_rng_state_keeps_each_gpus_generator(monkeypatch):
    """Two GPUs, faked: both generators are saved and restored; a checkpoint from another
    number of GPUs, or from the CPU, leaves them as seeded."""
    from ipassr.train.run import rng_state, set_rng_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1]), torch.tensor([2])])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = rng_state()
    assert [s.item() for s in state["cuda"]] == [1, 2]
    set_rng_state(state)
    assert restored == [state["cuda"]]
    set_rng_state({"torch": state["torch"]})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    set_rng_state(state)
    assert restored == [state["cuda"]]


def test_resume_with_a_changed_schedule_follows_the_new_config():
    """A config changed between runs rules the restored Adam and StepLR: the new betas, epsilon
    and decay, the new schedule's lr in closed form at the restored epoch, and StepLR stepping on
    from there; an unchanged schedule leaves the restored lr as it was."""
    from ipassr.train.step import apply_schedule_config, make_optimizer

    old = TrainConfig(lr=1e-3, lr_step_epochs=2, lr_gamma=0.5)
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], old)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, old.lr_step_epochs, old.lr_gamma)
    for _ in range(7):  # epoch 7: lr 1e-3 * 0.5 ** 3
        optimizer.step()
        scheduler.step()
    group = optimizer.param_groups[0]
    group["lr"] = 3.3e-5  # as a per-step schedule may leave it
    apply_schedule_config(optimizer, scheduler, dataclasses.replace(old, adam_eps=1e-7))
    assert (group["lr"], group["eps"], scheduler.base_lrs) == (3.3e-5, 1e-7, [1e-3])

    new = dataclasses.replace(old, lr=4e-4, lr_step_epochs=3, lr_gamma=0.1, adam_beta1=0.8,
                              adam_beta2=0.99, adam_eps=1e-6, weight_decay=0.01)
    apply_schedule_config(optimizer, scheduler, new)
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.99), 1e-6, 0.01)
    assert (scheduler.step_size, scheduler.gamma, scheduler.base_lrs) == (3, 0.1, [4e-4])
    assert group["initial_lr"] == 4e-4 and group["lr"] == pytest.approx(4e-6)  # 7 // 3: twice
    assert scheduler.get_last_lr() == [group["lr"]]
    for _ in range(2):  # epoch 9: down again
        optimizer.step()
        scheduler.step()
    assert group["lr"] == pytest.approx(4e-7)


def test_checkpoint_is_weights_only_and_exports_load_for_inference(tmp_path, cones_x2):
    source = tiny_source(cones_x2, count=4)
    trainer = Trainer(tiny_config(epochs=1, keep_checkpoints=1), tmp_path / "run", source=source,
                      progress=False)
    assert trainer.fit().status == "finished"
    run = tmp_path / "run"
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert payload["epoch"] == 1 and payload["global_step"] == 2 and payload["config"]["scale"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step-00000002.pt"]
    for name in ("last", "best"):
        network = load_network(run / "weights" / f"{name}.safetensors", scale=2)
        torch.testing.assert_close(network.state_dict()["upsampler.to_rgb.weight"],
                                   trainer.network.state_dict()["upsampler.to_rgb.weight"])
    assert load_network(run / "checkpoints" / "last.pt").scale == 2  # read_state_dict understands it
    sr_left, _ = StereoSR(network).super_resolve(cones_x2[0][0], cones_x2[1][0])
    assert sr_left.shape == (60, 180, 3) and sr_left.dtype == np.uint8
    assert "patches" in (run / "config.toml").read_text()


# ----------------------------------------------------------------------------- ablations

@pytest.mark.parametrize("changes", [
    {"use_attention": False},  # Table 1 single input
    {"views": "left"},  # asymmetric
    {"replicate_left": True},  # Table 1 replicated inputs
    {"use_whitening": False, "use_valid_mask": False},  # Table 3
    {"residual_photo": False, "residual_cycle": False, "residual_cons": False},  # Table 2
    {"loss_photo": False, "loss_smooth": False, "loss_cycle": False, "loss_cons": False},
], ids=["single-view", "asymmetric", "replicated", "no-whitening-no-mask", "plain-losses", "sr-only"])
def test_each_ablation_trains_and_its_weights_load_and_infer(tmp_path, cones_x2, changes):
    source = tiny_source(cones_x2, count=2)
    trainer = Trainer(tiny_config(epochs=1, **changes), tmp_path / "run", source=source,
                      progress=False)
    trainer.fit()
    network = load_network(tmp_path / "run" / "weights" / "last.safetensors")
    assert network.config == trainer.network.config
    assert (network.attention is None) == (changes.get("use_attention") is False)
    sr_left, sr_right = StereoSR(network).super_resolve(cones_x2[0][0][:12, :24],
                                                        cones_x2[1][0][:12, :24])
    assert sr_left.shape == sr_right.shape == (24, 48, 3)
    terms = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = next(r["loss"] for r in terms if r["event"] == "step")
    if changes.get("use_attention") is False or "loss_photo" in changes:
        assert set(logged) == {"total", "sr"}


def test_asymmetric_training_ignores_the_right_hr(tmp_path, cones_x2):
    """views='left': the right SR view is not supervised (L_SR left only, no L_cons).

    The right HR still feeds the residuals X_R of L_photo / L_cycle, which train the attention.
    """
    arrays = list(a[:2] for a in cones_x2)
    noisy = list(arrays)
    noisy[3] = np.random.default_rng(0).integers(0, 256, arrays[3].shape, dtype=np.uint8)
    losses = []
    for i, chosen in enumerate((arrays, noisy)):
        trainer = Trainer(tiny_config(views="left", hflip=False), tmp_path / f"r{i}",
                          source=ArrayPatches(*chosen, scale=2), progress=False)
        losses.append(trainer.train_step(next(trainer.batches())))
    assert losses[0]["sr"] == losses[1]["sr"]
    assert losses[0]["photo"] != losses[1]["photo"]
    assert "cons" not in losses[0]


# ----------------------------------------------------------------------------- stopping

def test_sigint_finishes_the_step_and_writes_a_checkpoint(tmp_path, cones_x2, monkeypatch):
    trainer = Trainer(tiny_config(), tmp_path / "run", source=tiny_source(cones_x2), progress=False)
    step = trainer.train_step

    def step_then_interrupt(inputs):
        values = step(inputs)
        if trainer.global_step == 1:  # during the second step
            signal.raise_signal(signal.SIGINT)
        return values

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    handler = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    result = trainer.fit()
    assert (result.status, result.global_step, result.signal) == ("interrupted", 2, signal.SIGINT)
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 2
    assert signal.getsignal(signal.SIGINT) is handler  # the one it found, put back


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_loader_workers_are_born_with_interrupts_blocked_then_ignore_them(cones_x2):
    """A SIGTERM sent to the process group as workers start must not kill one (the run checkpoints)."""
    class SignalState(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            return torch.tensor([signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
                                 signal.SIGTERM in blocked])

    with interrupts_blocked_while_workers_start():
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        batches = iter(make_loader(SignalState(), [[0, 1]], workers=1, pin_memory=False))
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    ignored, blocked = next(batches).T
    assert ignored.all() and not blocked.any()


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, cones_x2,
                                                                            monkeypatch):
    trainer = Trainer(tiny_config(checkpoint_every_steps=1), tmp_path / "run",
                      source=tiny_source(cones_x2), progress=False)
    trainer.fit(max_steps=1)
    saved = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    before = {k: p.detach().clone() for k, p in trainer.network.named_parameters()}
    real = training.compute_losses

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(training, "compute_losses", poisoned)
    with pytest.raises(TrainingDiverged, match=r"not finite at epoch 1, step 2 .*last good checkpoint"):
        trainer.fit(max_steps=3)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == saved
    assert all(torch.equal(before[k], p) for k, p in trainer.network.named_parameters())


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, cones_x2,
                                                                      monkeypatch):
    trainer = Trainer(tiny_config(checkpoint_every_steps=1), tmp_path / "run",
                      source=tiny_source(cones_x2), progress=False)
    trainer.fit(max_steps=1)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = last.read_bytes()

    def full_disk(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training.torch, "save", full_disk)
    with pytest.raises(IpassrError, match="disk full.*previous checkpoint is intact"):
        trainer.fit(max_steps=2)
    assert last.read_bytes() == saved
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []
    assert read_checkpoint(last)["global_step"] == 1


def test_time_limit_stops_before_a_step_would_overrun(tmp_path, cones_x2, monkeypatch):
    """With 10 s steps and a 30 s limit: after 2 steps (20 s), a third (+1.5 x 10 s margin) won't fit."""
    trainer = Trainer(tiny_config(), tmp_path / "run", source=tiny_source(cones_x2), progress=False)
    clock = [1000.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: clock[0])
    step = trainer.train_step

    def ten_second_step(inputs):
        clock[0] += 10.0
        return step(inputs)

    monkeypatch.setattr(trainer, "train_step", ten_second_step)
    result = trainer.fit(time_limit=30)
    assert (result.status, result.global_step) == ("budget", 2)
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 2


# ----------------------------------------------------------------------------- bad input

def test_wrong_scale_patches_are_refused(tmp_path, cones_x2):
    with pytest.raises(IpassrError, match=r"cones: patches are for x2 but the run trains x4"):
        Trainer(tiny_config(scale=4), tmp_path / "run", source=tiny_source(cones_x2))


def test_fewer_patches_than_a_batch_is_refused(tmp_path, cones_x2):
    with pytest.raises(IpassrError, match="holds 1 patches, fewer than one batch"):
        Trainer(tiny_config(), tmp_path / "run", source=tiny_source(cones_x2, count=1))


def test_resume_with_a_different_network_is_refused(tmp_path, cones_x2):
    Trainer(tiny_config(), tmp_path / "run", source=tiny_source(cones_x2), progress=False).fit(max_steps=1)
    run = re.escape(str(tmp_path / "run"))
    with pytest.raises(IpassrError, match=rf"^{run}: cannot resume: the run was trained with a "
                                          r"different network \(use_attention: True -> False\)$"):
        Trainer(tiny_config(use_attention=False), tmp_path / "run", source=tiny_source(cones_x2),
                resume=True, overrides={"use_attention"})
    # only what was asked for on the command line overrides the saved config
    kept = Trainer(tiny_config(use_attention=False), tmp_path / "run",
                   source=tiny_source(cones_x2), resume=True, overrides=set())
    assert kept.config.use_attention
    with pytest.raises(IpassrError, match=r"scale: 2 -> 4"):
        Trainer(tiny_config(scale=4), tmp_path / "run", source=tiny_source(cones_x2),
                resume=True, overrides={"scale"})
    with pytest.raises(IpassrError, match="already holds a training run; pass --resume"):
        Trainer(tiny_config(), tmp_path / "run", source=tiny_source(cones_x2))


def test_a_foreign_file_is_not_resumed(tmp_path, monkeypatch):
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, last)
    with pytest.raises(IpassrError, match="not an ipassr training checkpoint"):
        Trainer(tiny_config(), tmp_path / "run", resume=True)
    last.write_bytes(b"garbage")
    with pytest.raises(IpassrError, match=r"not a readable training checkpoint \(UnpicklingError: "
                                          r"Weights only load failed\. In PyTorch"):
        Trainer(tiny_config(), tmp_path / "run", resume=True)
    # any object besides tensors and plain containers is refused, not unpickled
    torch.save({"format": CHECKPOINT_FORMAT, "note": argparse.Namespace(run=1)}, last)
    with pytest.raises(CheckpointError, match=r"not a readable training checkpoint \(Unpickling"):
        read_checkpoint(last)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path))}/none\.pt: no such "
                                              r"checkpoint$"):
        read_checkpoint(tmp_path / "none.pt")

    def fails_without_a_message(*args, **kwargs):
        raise RuntimeError()

    monkeypatch.setattr(torch, "load", fails_without_a_message)
    with pytest.raises(CheckpointError, match=r"checkpoint \(RuntimeError: \)$"):
        read_checkpoint(last)


def test_speed_options_train_close_to_the_fp32_step(tmp_path, cones_x2):
    """bf16 autocast + channels_last train close to the fp32 step; the weights stay fp32."""
    source = tiny_source(cones_x2, count=2)
    results = {}
    for name, options in {"fp32": {}, "bf16": {"amp": "bf16", "channels_last": True}}.items():
        trainer = Trainer(tiny_config(hflip=False, vflip=False, **options), tmp_path / name,
                          source=source, progress=False)
        results[name] = trainer.train_step(next(trainer.batches()))
        assert all(p.dtype == torch.float32 for p in trainer.network.parameters())
    for key, value in results["fp32"].items():
        # measured: at most 0.25% apart (L_smooth); a step taken in the wrong precision is not
        assert results["bf16"][key] == pytest.approx(value, rel=0.01), key


def test_tensorboard_receives_the_logged_scalars_when_installed(tmp_path, monkeypatch):
    """With the optional tensorboard package (faked here), every logged number becomes a scalar."""
    calls = []

    class Writer:
        def __init__(self, logdir):
            calls.append(("open", logdir))

        def add_scalar(self, key, value, step):
            calls.append((key, value, step))

        def close(self):
            calls.append(("close",))

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    log = training.RunLog(tmp_path / "log.jsonl", tmp_path / "tb", enabled=True)
    log.write({"event": "step", "global_step": 3, "lr": 1e-4, "loss": {"total": 0.5, "sr": 0.4}})
    log.write({"event": "validation", "global_step": 4, "val": {"KITTI": {"left_psnr": 30.0}}})
    log.close()
    assert calls[0] == ("open", str(tmp_path / "tb")) and calls[-1] == ("close",)
    assert {("loss/total", 0.5, 3), ("loss/sr", 0.4, 3), ("train/lr", 1e-4, 3),
            ("val/KITTI/left_psnr", 30.0, 4)} <= set(calls)
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


# ----------------------------------------------------------------------------- data plan

def test_hflip_mirrors_and_swaps_the_views_and_crops_stay_aligned(cones_x2):
    lr_left, lr_right, hr_left, hr_right = (a[0] for a in cones_x2)
    dataset = PatchDataset(tiny_source(cones_x2, count=1), crop=(10, 20))
    got = [t.numpy() for t in dataset[(0, True, False, 3, 7)]]  # (index, hflip, vflip, top, left)
    assert np.array_equal(got[0], lr_right[3:13, 7:27][:, ::-1])
    assert np.array_equal(got[1], lr_left[3:13, 7:27][:, ::-1])
    assert np.array_equal(got[2], hr_right[6:26, 14:54][:, ::-1])
    assert np.array_equal(got[3], hr_left[6:26, 14:54][:, ::-1])
    got = [t.numpy() for t in dataset[(0, False, True, 0, 0)]]
    assert np.array_equal(got[0], lr_left[:10, :20][::-1])
    assert np.array_equal(got[3], hr_right[:20, :40][::-1])


def test_process_slices_make_up_the_single_process_batches_and_resume_skips():
    plan = epoch_plan(20, (30, 90), Augmentation(), seed=1, epoch=3)
    assert plan == epoch_plan(20, (30, 90), Augmentation(), seed=1, epoch=3)
    assert plan != epoch_plan(20, (30, 90), Augmentation(), seed=1, epoch=4)
    assert sorted(item[0] for item in plan) == list(range(20))
    assert 0 < sum(item[1] for item in plan) < 20 and 0 < sum(item[2] for item in plan) < 20
    single = list(EpochBatches(plan, 8))
    assert len(single) == 2  # the last 4 samples are dropped, as drop_last=True
    ranks = [list(EpochBatches(plan, 8, rank=r, world_size=2)) for r in range(2)]
    assert [ranks[0][s] + ranks[1][s] for s in range(2)] == single
    assert list(EpochBatches(plan, 8, start_step=1)) == single[1:]
    still = epoch_plan(20, (30, 90), Augmentation(hflip=False, vflip=False), seed=1, epoch=3)
    assert not any(item[1] or item[2] for item in still)


# ----------------------------------------------------------------------------- recipe options

def test_learning_rate_schedules():
    paper = TrainConfig()
    assert training.learning_rate(paper, 500, 3, 100) is None  # StepLR alone does it
    warm = TrainConfig(lr=1e-3, warmup_steps=4)
    assert [training.learning_rate(warm, s, 0, 100) for s in range(5)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert training.learning_rate(warm, 10, 31, 100) == pytest.approx(5e-4)  # epoch 31: halved
    cosine = TrainConfig(lr=1e-3, lr_min=1e-4, lr_schedule="cosine", lr_total_steps=100)
    assert training.learning_rate(cosine, 0, 0, 10) == pytest.approx(1e-3)
    assert training.learning_rate(cosine, 50, 5, 10) == pytest.approx(5.5e-4)
    assert training.learning_rate(cosine, 100, 10, 10) == pytest.approx(1e-4)
    assert training.learning_rate(cosine, 150, 15, 10) == pytest.approx(1e-4)  # stays at the end
    late = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_decay_from=60, lr_total_steps=100)
    assert [training.learning_rate(late, s, 0, 10) for s in (0, 60, 80, 100)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 0.0])
    everything = TrainConfig(lr=1e-3, lr_schedule="cosine", epochs=4)
    assert training.learning_rate(everything, 20, 2, 10) == pytest.approx(5e-4)  # 20 of 40 steps
    with pytest.raises(IpassrError, match="lr_schedule must be"):
        from ipassr.train.config import apply_overrides
        apply_overrides(TrainConfig(), {"lr_schedule": "linear"}, "test")


def test_the_optimizer_follows_the_schedule(tmp_path, cones_x2):
    config = tiny_config(lr=1e-3, lr_schedule="cosine", lr_total_steps=4, warmup_steps=2)
    trainer = Trainer(config, tmp_path / "run", source=tiny_source(cones_x2), progress=False)
    trainer.fit(max_steps=4)
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    rates = [r["lr"] for r in map(json.loads, log) if r["event"] == "step"]
    expected = [training.learning_rate(config, s, 0, 3) for s in range(4)]
    assert rates == pytest.approx(expected) and rates[0] == pytest.approx(0.5e-3 * (1 + np.cos(0)) / 2)


def test_init_from_another_scale_or_variant_moves_the_trunk(tmp_path, cones_x2):
    """x4 weights start an x2 run (all but the upsampler's expansion) or a single-view run (all
    but biPAM); foreign weights are refused."""
    from ipassr.models.checkpoint import save_weights, transfer_into
    from ipassr.models.ipassr import IPASSR

    torch.manual_seed(7)
    x4 = IPASSR(4)
    save_weights(x4, tmp_path / "x4.safetensors")
    trainer = Trainer(tiny_config(), tmp_path / "x2", source=tiny_source(cones_x2),
                      init_weights=tmp_path / "x4.safetensors", progress=False)
    ours, theirs = trainer.network.state_dict(), x4.state_dict()
    assert trainer.init_kept == ["upsampler.expand.bias", "upsampler.expand.weight"]
    for name, value in ours.items():
        if name not in trainer.init_kept:
            assert torch.equal(value, theirs[name]), name
    assert not torch.equal(ours["upsampler.expand.bias"][:10], theirs["upsampler.expand.bias"][:10])
    single = IPASSR(4, use_attention=False)
    kept = transfer_into(single, theirs)
    assert kept == [] and torch.equal(single.state_dict()["fusion.project.weight"],
                                      theirs["fusion.project.weight"])
    trainer.fit(max_steps=1)
    start = json.loads((tmp_path / "x2" / "log.jsonl").read_text().splitlines()[0])
    assert start["init_kept"] == trainer.init_kept and start["init_weights"].endswith("x4.safetensors")
    foreign = {k.replace("feature_group", "other"): v for k, v in theirs.items()}
    with pytest.raises(IpassrError, match="beyond its upsampler and biPAM"):
        transfer_into(IPASSR(2), foreign)


def test_frozen_parts_keep_their_weights_and_the_rest_trains(tmp_path, cones_x2):
    frozen = ("feature_conv", "feature_group", "attention")
    trainer = Trainer(tiny_config(freeze=" feature_conv, feature_group,attention"), tmp_path / "run",
                      source=tiny_source(cones_x2), progress=False)
    before = state_of(trainer)
    trainer.fit(max_steps=2)
    after = state_of(trainer)
    parameters = {name for name, _ in trainer.network.named_parameters()}
    for name in parameters:
        unchanged = torch.equal(before[name], after[name])
        assert unchanged == name.startswith(frozen), name
    with pytest.raises(IpassrError, match="no part named biPAM .*feature_group"):
        Trainer(tiny_config(freeze="biPAM"), tmp_path / "bad", source=tiny_source(cones_x2),
                progress=False)


def test_the_network_options_of_a_train_config_are_model_configs_fields():
    """TrainConfig carries ModelConfig's fields (all but the scale) under the same names, types
    and defaults, and the ones a run changes build the same ModelConfig."""
    from dataclasses import fields

    from ipassr.models.configs import ModelConfig

    train_fields = {f.name: f for f in fields(TrainConfig)}
    for field in fields(ModelConfig):
        if field.name != "scale":
            assert field.name in train_fields, field.name
            assert train_fields[field.name].type == field.type, field.name
            assert train_fields[field.name].default == field.default, field.name
    config = TrainConfig(scale=2, use_whitening=False, channels=32)
    assert config.model_options() == {"use_whitening": False, "channels": 32}
    assert ModelConfig(scale=config.scale, **config.model_options()) == ModelConfig(
        scale=2, use_whitening=False, channels=32)
