"""The model's math against independent references (autograd, literal constants, forward)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model.config import ModelConfig, named_config, tiny_config
from model.drldm import diffusion_schedule
from model.mgda import MGDA, decomposed_apply, decomposed_gradient
from model.unfoldldm import UnfoldLDM

torch.set_num_threads(1)


def test_decomposed_gradient_equals_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(2, 12, 12, generator=gen), dim=-1)
    m = torch.softmax(torch.randn(2, 20, 20, generator=gen), dim=-1)
    x = torch.rand(2, 3, 12, 20, generator=gen, dtype=torch.float64).float().requires_grad_(True)
    y = torch.rand(2, 3, 12, 20, generator=gen)
    energy = 0.5 * ((decomposed_apply(w, x, m) - y) ** 2).sum()
    (reference,) = torch.autograd.grad(energy, x)
    assert torch.allclose(decomposed_gradient(w, m, x.detach(), y), reference, atol=1e-5, rtol=1e-5)


def test_decomposed_apply_is_w_x_m_per_channel() -> None:
    w, x, m = torch.randn(1, 4, 4), torch.randn(1, 3, 4, 5), torch.randn(1, 5, 5)
    out = decomposed_apply(w, x, m)
    for c in range(3):
        assert torch.allclose(out[0, c], w[0] @ x[0, c] @ m[0], atol=1e-5)


def test_schedule_matches_literal_alpha_bars() -> None:
    # betas = linspace(sqrt(0.1), sqrt(0.99), 4)^2 = 0.1, 0.2942856242, 0.5909522909, 0.99;
    # alpha-bar = cumulative product of (1 - beta), worked out in 30-digit decimal arithmetic.
    literal = [0.9, 0.635142938220, 0.259803763851, 0.00259803763851]
    assert diffusion_schedule(4, 0.1, 0.99) == pytest.approx(literal, rel=1e-9)


def test_step_sizes_are_positive_even_for_negative_raw_parameters() -> None:
    mgda = MGDA(tiny_config())
    with torch.no_grad():
        mgda.rho.fill_(-20.0)
        mgda.eta.fill_(-20.0)
    assert torch.nn.functional.softplus(mgda.rho) > 0
    assert torch.nn.functional.softplus(mgda.eta) > 0


def _model(config: ModelConfig, seed: int = 0) -> UnfoldLDM:
    torch.manual_seed(seed)
    model = UnfoldLDM(config).eval()
    # Randomise the zero-initialised modulations so the prior really changes the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name:
                p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("mgda_mode", ["both", "holistic", "decomposed"])
@pytest.mark.parametrize("share", [False, True])
def test_stage_methods_reproduce_forward_exactly(mgda_mode: str, share: bool) -> None:
    model = _model(tiny_config(mgda_mode=mgda_mode, share_stage_weights=share))
    y = torch.rand(2, 3, 16, 24)
    noise = torch.randn(2, model.config.prior_dim)
    with torch.no_grad():
        reference = model(y, noise)
        x = y
        for k in range(model.config.stages):
            v = model.gradient_step(k, x, y)
            z = model.prior_step(v, noise, UnfoldLDM.stage_tensor(k, y))
            x = model.proximal_step(k, v, z)
    assert torch.equal(x, reference)


def test_forward_draws_no_random_numbers_and_noise_matters() -> None:
    model = _model(tiny_config())
    y = torch.rand(1, 3, 16, 16)
    noise = torch.randn(1, model.config.prior_dim)
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model(y, noise)
        b = model(y, noise)
        c = model(y, noise + 1.0)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "overrides",
    [{"use_prior": False}, {"use_high_freq": False}, {"stages": 1}, {"mgda_mode": "holistic"}, {"stages": 3}],
)
def test_ablation_switches_build_and_run(overrides: dict) -> None:
    model = _model(tiny_config(**overrides))
    y = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out = model(y, torch.zeros(1, model.config.prior_dim))
    assert out.shape == y.shape and torch.isfinite(out).all()
    assert (model.prior is None) == (not model.config.use_prior)


def test_fewer_stages_at_inference_gives_each_stage_output() -> None:
    model = _model(tiny_config(stages=3))
    y, noise = torch.rand(1, 3, 16, 16), torch.randn(1, model.config.prior_dim)
    with torch.no_grad():
        one = model(y, noise, stages=1)
        v = model.gradient_step(0, y, y)
        first = model.proximal_step(0, v, model.prior_step(v, noise, UnfoldLDM.stage_tensor(0, y)))
    assert torch.equal(one, first)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    config = named_config("edge")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="mgda_mode"):
        dataclasses.replace(config, mgda_mode="sideways")
    with pytest.raises(ValueError, match="unknown model size"):
        named_config("huge")


def test_pad_multiple_covers_unet_and_decomposed_grid() -> None:
    assert named_config("edge").pad_multiple == 4
    assert named_config("base").pad_multiple == 8
    model = _model(tiny_config())
    m = model.config.pad_multiple
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            model(torch.rand(1, 3, 4 * m + 1, 4 * m + 1), torch.zeros(1, model.config.prior_dim))


def test_edge_stays_inside_its_compute_budget() -> None:
    from model.complexity import describe

    row = describe(named_config("edge"))
    assert row["gmac_256x256"] <= 7.0, row
    assert row["gmac_1280x720"] <= 130.0, row
    # The counter must see the model's real work: a bigger config costs more.
    assert describe(named_config("small"), sizes=((256, 256),))["gmac_256x256"] > row["gmac_256x256"]
