"""Multi-process training on PyTorch's own engine: torchrun environment, agreement, global BatchNorm.

``torchrun --nproc_per_node=K -m ipassr train ...`` starts K processes with RANK, WORLD_SIZE and
LOCAL_RANK set; ``init_distributed`` joins them into one process group (NCCL on GPU, Gloo on CPU).
PyTorch's ``SyncBatchNorm`` only runs on GPUs, so ``GlobalBatchNorm2d`` provides the same thing with
differentiable all-reduces that work on any backend (used on CPU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..devices import DistEnv, env_from_environment  # torchrun's variables, read in one place


def init_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group torchrun set up (NCCL for GPUs, Gloo for CPUs); no-op for one process."""
    env = env_from_environment()
    if env.distributed and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend)
    return env


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def agree(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (stop, divergence, failed write)."""
    if not env.distributed:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op for one process)."""
    if env.distributed:
        dist.barrier()


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced (summed) gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over every process of the group."""
    return _SumOverProcesses.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batch of every process (any backend).

    Two differentiable all-reduces per call (sum and count, then the centred sum of squares), so the
    forward and backward passes equal BatchNorm over the global batch. In eval mode, or without a
    process group, it is a plain BatchNorm2d; its state dict is that of a BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()) \
                or dist.get_world_size() == 1:
            return super().forward(x)
        channels = x.shape[1]
        count_local = x.numel() // channels
        sums = torch.cat((x.sum(dim=(0, 2, 3)), x.new_tensor([float(count_local)])))
        sums = sum_over_processes(sums)
        count = sums[-1]
        mean = sums[:channels] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = sum_over_processes((centred * centred).sum(dim=(0, 2, 3))) / count
        self._update_running_stats(mean.detach(), var.detach(), count.detach())
        scale = torch.rsqrt(var + self.eps)
        out = centred * scale.view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor
                              ) -> None:
        """Running averages as nn.BatchNorm2d keeps them (unbiased variance, same momentum)."""
        if not self.track_running_stats or self.running_mean is None:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(
            self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def convert_batchnorm(module: nn.Module, use_cuda: bool) -> nn.Module:
    """Make every BatchNorm2d use global-batch statistics: SyncBatchNorm on GPU, ours on CPU."""
    if use_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum,
                                            child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement.to(next(child.buffers()).device))
        else:
            convert_batchnorm(child, use_cuda)
    return module
