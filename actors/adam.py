"""Adam on torch's fused kernel, without ``torch.optim``: the same bits, and no ``torch._dynamo`` import.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` the first time one is built or
stepped (``Optimizer.add_param_group`` and ``Adam.step`` are wrapped to keep dynamo out of
them): about 1.4 s of CPU here, on the VAE actor's start-up path, for a run that never
compiles anything.  :class:`FusedAdam` calls the kernel ``torch.optim.Adam(fused=True)``
calls, ``torch._fused_adam_``, on the same tensors in the same order (its steps count in
float32 on the parameters' device, as torch's fused path keeps them), so its updates equal
torch's bit for bit; its ``state_dict`` has torch's format, so either loads the other's.
Only Adam's defaults are kept (no weight decay, amsgrad, maximize or gradient scaling).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["FusedAdam", "fused_adam_supported"]


def fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernel runs on these parameters' device and dtype.

    Asked of the kernel itself: one :meth:`FusedAdam.step` on a one-element probe per
    (device, dtype), so the answer is this torch build's own (CPU fused Adam came with
    torch 2.4), not a list kept here.
    """
    if not params or not hasattr(torch, "_fused_adam_"):
        return False
    for device, dtype in {(p.device, p.dtype) for p in params}:
        if not dtype.is_floating_point:
            return False
        probe = torch.nn.Parameter(torch.zeros(1, dtype=dtype, device=device))
        probe.grad = torch.zeros_like(probe)
        try:
            FusedAdam([probe]).step()
        except (RuntimeError, NotImplementedError):
            return False
    return True


class FusedAdam:
    """``torch.optim.Adam(params, lr, fused=True)``'s updates with its defaults, bit for bit.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        All on one device, floating point (:func:`fused_adam_supported`).
    lr : float
        Learning rate.
    betas : tuple of float
    eps : float
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("FusedAdam got an empty parameter list")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        # per parameter: step (float32 scalar on its device), exp_avg, exp_avg_sq; made at its first step
        self.state: list[dict[str, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``torch.optim.Optimizer.zero_grad``."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state = self.state[i]
            if state is None:
                state = self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            params.append(p)
            grads.append(p.grad)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params,
            grads,
            avgs,
            sqs,
            [],
            steps,
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam(fused=True).state_dict()``'s format (tensors shared, not copied)."""
        group = {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": 0,
            "amsgrad": False,
            "maximize": False,
            "foreach": None,
            "capturable": False,
            "differentiable": False,
            "fused": True,
            "decoupled_weight_decay": False,
            "params": list(range(len(self.params))),
        }
        state = {i: dict(s) for i, s in enumerate(self.state) if s is not None}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state written by :meth:`state_dict` or by ``torch.optim.Adam`` (one group, these defaults).

        Raises
        ------
        ValueError
            The state is for another number of parameters or other shapes, or uses an Adam
            option this class does not have.
        """
        groups = state_dict.get("param_groups", [])
        if len(groups) != 1 or len(groups[0].get("params", [])) != len(self.params):
            got = [len(g.get("params", [])) for g in groups]
            raise ValueError(f"optimizer state should have one group of {len(self.params)} parameters, got {got}")
        group = groups[0]
        for key, default in (("weight_decay", 0), ("amsgrad", False), ("maximize", False)):
            if group.get(key, default) != default:
                raise ValueError(f"optimizer state should have {key}={default!r}, got {group[key]!r}")
        new: list[dict[str, torch.Tensor] | None] = [None] * len(self.params)
        for slot, index in enumerate(group["params"]):
            saved = state_dict["state"].get(index)
            if saved is None:
                continue
            p = self.params[slot]
            for key in ("exp_avg", "exp_avg_sq"):
                if tuple(saved[key].shape) != tuple(p.shape):
                    raise ValueError(
                        f"optimizer state's {key} of parameter {slot} should have shape {tuple(p.shape)}, "
                        f"got {tuple(saved[key].shape)}"
                    )
            new[slot] = {
                "step": torch.as_tensor(saved["step"]).to(device=p.device, dtype=torch.float32).clone(),
                "exp_avg": saved["exp_avg"].to(device=p.device, dtype=p.dtype).clone(),
                "exp_avg_sq": saved["exp_avg_sq"].to(device=p.device, dtype=p.dtype).clone(),
            }
        self.lr, self.betas, self.eps = float(group["lr"]), tuple(float(b) for b in group["betas"]), float(group["eps"])
        self.state = new
