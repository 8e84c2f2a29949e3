"""N copies of one network as one module: each parameter and buffer stacked along a leading
member axis, the members evaluated together with ``torch.func.vmap`` over ``functional_call``.

    g = StackedNetworks([MLPGenerator(64, 2), MLPGenerator(64, 2), MLPGenerator(64, 2)])
    samples = g(z)            # z: (3, B, 64) -> (3, B, 2), member m's network on z[m]
    g.member(1)               # an ordinary MLPGenerator with member 1's weights

The stacked parameters are ordinary leaves, so autograd *outside* the vmap differentiates the sum
of the members' losses into each member's own gradient (the members share nothing), and every
Jacobian product of ``game.algebra`` separates by member (``gans.sweep``).
"""
from __future__ import annotations

import copy
from typing import Sequence

from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def _escape(name: str) -> str:
    # a parameter's own name may not contain dots: its submodule path becomes part of the name
    return name.replace(".", "__")


class StackedNetworks(nn.Module):
    """The networks ``members`` (same class, same parameter shapes) as one module whose forward
    takes one input per member along the leading axis.

    Networks that draw random numbers in their forward pass (dropout, noise inputs) are refused
    by vmap with an error naming the operation: their members would not draw what separate runs
    draw."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("StackedNetworks needs at least one member network")
        first = members[0]
        for i, net in enumerate(members[1:], 1):
            if type(net) is not type(first):
                raise ValueError(f"member {i} is a {type(net).__name__}, member 0 a {type(first).__name__}: the members "
                                 f"of a sweep share one architecture")
            shapes = [(n, p.shape) for n, p in net.named_parameters()]
            if shapes != [(n, p.shape) for n, p in first.named_parameters()]:
                raise ValueError(f"member {i}'s parameters differ in name or shape from member 0's: the members of a "
                                 f"sweep share one architecture")
        params, buffers = stack_module_state(list(members))
        self._names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_escape(name), nn.Parameter(value.detach().clone(),
                                                                requires_grad=dict(first.named_parameters())[name].requires_grad))
        for name, value in buffers.items():
            self.register_buffer(_escape(name), value.clone())
        # the architecture, without storage, for functional_call; kept out of the module tree
        # (its parameters are not this module's)
        object.__setattr__(self, "_template", copy.deepcopy(first).to("meta"))
        self.count = len(members)

    @property
    def template(self) -> nn.Module:
        """The member architecture without storage (meta tensors), for ``functional_call``."""
        return self._template

    def stacked_parameters(self) -> dict[str, Tensor]:
        """Member networks' parameter names -> stacked tensors (N, ...)."""
        return {name: getattr(self, _escape(name)) for name in self._names}

    def names(self) -> dict[str, str]:
        """This module's names of the stacked tensors -> the member network's names."""
        return {_escape(name): name for name in [*self._names, *self._buffer_names]}

    def stacked_buffers(self) -> dict[str, Tensor]:
        return {name: getattr(self, _escape(name)) for name in self._buffer_names}

    def forward(self, x: Tensor) -> Tensor:
        """Member m's network on ``x[m]``, for every m: (N, B, ...) -> (N, B, ...)."""
        if x.shape[0] != self.count:
            raise ValueError(f"a stack of {self.count} networks takes inputs with {self.count} rows along the first "
                             f"axis (one batch per member), got shape {tuple(x.shape)}")

        def one(params, buffers, inputs):
            return functional_call(self._template, (params, buffers), (inputs,))
        return vmap(one)(self.stacked_parameters(), self.stacked_buffers(), x)

    def member(self, index: int) -> nn.Module:
        """Member ``index`` as an ordinary network (a copy: training the stack does not change it)."""
        net = copy.deepcopy(self._template).to_empty(device=next(iter(self.stacked_parameters().values())).device)
        net.load_state_dict(self.member_state(index), strict=True)
        return net.train(self.training)

    def member_state(self, index: int) -> dict[str, Tensor]:
        """Member ``index``'s state dict, under the member network's own names."""
        return {name: t[index].detach().clone() for name, t in
                {**self.stacked_parameters(), **self.stacked_buffers()}.items()}
