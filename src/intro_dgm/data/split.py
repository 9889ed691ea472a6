"""The container every data set comes in, and what a model must know of the data.

:class:`Split` holds the train, validation and test tensors with what describes them (the
values a pixel takes, the image shape, the data set's name). :class:`DataFields` is that
description as a model config holds it -- input size, number of values, likelihood, with their
checks, written once for every model config -- and :meth:`Split.data_fields` fills it from a
data set by one rule: real-valued data take a Gaussian likelihood, two values a Bernoulli, more
a categorical.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils import check_choice, check_int

#: the likelihoods p(x|z) a model can put on the data (a decoder per name)
LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


def likelihood_for(num_vals: int) -> str:
    """The likelihood of data whose values number ``num_vals`` (0 for real-valued data)."""
    check_int(num_vals, "num_vals", minimum=0)
    if num_vals == 1:
        raise ValueError("num_vals must be 0 (real-valued data) or >= 2, got 1")
    return "gaussian" if num_vals == 0 else "bernoulli" if num_vals == 2 else "categorical"


def check_likelihood(likelihood: str, num_vals: int) -> None:
    """Raise a clear error unless ``likelihood`` can model data with ``num_vals`` values.

    ``categorical`` needs at least 2 values, ``bernoulli`` exactly 2; ``gaussian`` is for
    real-valued data and ignores ``num_vals``.
    """
    check_choice(likelihood, "likelihood", LIKELIHOODS)
    if likelihood == "gaussian":
        return
    check_int(num_vals, "num_vals", minimum=2)
    if likelihood == "bernoulli" and num_vals != 2:
        raise ValueError(f"a bernoulli decoder models binary pixels: num_vals must be 2, got "
                         f"{num_vals} (use likelihood='categorical' for {num_vals} values)")


@dataclass
class DataFields:
    """The fields of a model config that describe the data (the protocol fills them from the
    data set, :meth:`Split.data_fields`): ``input_dim`` D, the values per pixel ``num_vals``
    (ignored by a ``gaussian`` likelihood) and the ``likelihood``, one of :data:`LIKELIHOODS`.
    A config that derives from it calls ``super().__post_init__()`` first."""

    input_dim: int = 64
    num_vals: int = 17
    likelihood: str = "categorical"

    def __post_init__(self):
        check_int(self.input_dim, "input_dim", minimum=1)
        check_likelihood(self.likelihood, self.num_vals)


@dataclass
class Split:
    """Train / validation / test tensors of one data set, with what a model needs to know."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    num_vals: int  #: values a pixel takes (17 for Digits, 2 binary); 0 for real-valued data
    image_shape: tuple[int, int]
    name: str

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def data_fields(self) -> dict:
        """The :class:`DataFields` of a model of this data (no ``num_vals`` for real values)."""
        fields = {"input_dim": self.dim, "likelihood": likelihood_for(self.num_vals)}
        if self.num_vals:
            fields["num_vals"] = self.num_vals
        return fields
