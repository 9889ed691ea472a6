"""Decoders: log-likelihoods against torch.distributions, validation, impossible configs."""
import pytest
import torch
import torch.distributions as td

from intro_dgm.decoders import (DECODERS, BernoulliDecoder, CategoricalDecoder, GaussianDecoder,
                                make_decoder)
from intro_dgm.data import LIKELIHOODS, check_likelihood
from intro_dgm.models import VAEConfig


def test_categorical_decoder_matches_torch_and_broadcasts_over_samples():
    torch.manual_seed(0)
    dec = make_decoder("categorical", 3, (8,), 5, 17)
    assert isinstance(dec, CategoricalDecoder)
    x = torch.randint(0, 17, (4, 5)).float()
    z = torch.randn(6, 4, 3)  # 6 samples for each of 4 examples
    ref = td.Independent(td.Categorical(logits=dec.logits(z)), 1).log_prob(x.long())
    assert torch.allclose(dec.log_prob(x, z), ref, atol=1e-5)
    assert dec.log_prob(x, z).shape == (6, 4)
    mean = dec.mean(z[0])
    assert mean.shape == (4, 5) and ((mean >= 0) & (mean <= 16)).all()


def test_bernoulli_and_gaussian_decoders_match_torch():
    torch.manual_seed(0)
    bern = make_decoder("bernoulli", 2, (8,), 5, 2)
    assert isinstance(bern, BernoulliDecoder)
    x, z = torch.randint(0, 2, (4, 5)).float(), torch.randn(4, 2)
    ref = td.Independent(td.Bernoulli(logits=bern.net(z)), 1).log_prob(x)
    assert torch.allclose(bern.log_prob(x, z), ref, atol=1e-5)
    gauss = make_decoder("gaussian", 2, (8,), 5, 17)  # num_vals is ignored for real data
    assert isinstance(gauss, GaussianDecoder)
    with torch.no_grad():
        gauss.log_var.fill_(0.7)
    x = torch.randn(4, 5)
    ref = td.Independent(td.Normal(gauss.net(z), torch.exp(torch.tensor(0.35))), 1).log_prob(x)
    assert torch.allclose(gauss.log_prob(x, z), ref, atol=1e-5)


def test_a_config_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="bernoulli decoder models binary pixels: num_vals must be 2, got 17"):
        check_likelihood("bernoulli", 17)
    with pytest.raises(ValueError, match="num_vals must be 2"):
        VAEConfig(likelihood="bernoulli")  # num_vals defaults to 17
    with pytest.raises(ValueError, match="^likelihood must be one of categorical, bernoulli, gaussian; got 'poisson'$"):
        make_decoder("poisson", 2, (8,), 5, 17)
    with pytest.raises(ValueError, match="num_vals must be an integer >= 2"):
        VAEConfig(num_vals=1)
    VAEConfig(likelihood="bernoulli", num_vals=2)
    VAEConfig(likelihood="gaussian", input_dim=2)


@pytest.mark.parametrize("decoder, x, match", [
    (lambda: make_decoder("categorical", 2, (4,), 3, 17), torch.full((2, 3), 17.0), "0..16"),
    (lambda: make_decoder("categorical", 2, (4,), 3, 17), torch.full((2, 3), 2.5), "integer pixel values"),
    (lambda: make_decoder("bernoulli", 2, (4,), 3, 2), torch.full((2, 3), 3.0), "binary"),
    (lambda: make_decoder("gaussian", 2, (4,), 3, 2), torch.zeros(2, 4), "size 3"),
])
def test_validate_names_the_problem(decoder, x, match):
    with pytest.raises(ValueError, match=match):
        decoder().validate(x)


def test_one_decoder_for_every_likelihood_of_the_data_layer():
    """The data layer names the likelihoods (and checks them against the data); the decoders
    implement them: the two lists are one."""
    assert tuple(DECODERS) == LIKELIHOODS
