"""model/export_forms.py: the export's graph forms compute what the training modules compute."""

from __future__ import annotations

import onnx
import pytest
import torch

from model.config import tiny_config
from model.export_forms import FORMS, KEPT_FORMS, export_form
from model.unfoldldm import UnfoldLDM
from runtime.manifest import load_manifest


def _random_model(seed: int = 0) -> UnfoldLDM:
    """The tiny model with every parameter random, the zero-initialised prior modulation and the
    norms' affine included, so that each folded term is exercised."""
    torch.manual_seed(seed)
    model = UnfoldLDM(tiny_config()).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modulation" in name or "norm" in name or "gate" in name:
                param.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("forms", [(f,) for f in FORMS] + [FORMS], ids=[*FORMS, "all"])
def test_each_form_matches_the_training_modules(forms: tuple[str, ...]) -> None:
    model = _random_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    form = export_form(model, forms)
    generator = torch.Generator().manual_seed(1)
    v = torch.rand(2, 3, 32, 48, generator=generator)
    z = torch.randn(2, model.config.prior_dim, generator=generator)
    with torch.no_grad():
        for stage in range(model.config.stages):
            expected = model.proximal_step(stage, v, z)
            torch.testing.assert_close(form.proximal_step(stage, v, z), expected, rtol=0, atol=2e-5)
    # The training model is left as it was: the forms live in a copy.
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())
    assert type(form) is type(model) and form is not model


def test_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown graph forms"):
        export_form(_random_model(), ("fold_everything",))


def test_split_projections_leave_no_slice_of_a_convolution(tmp_path) -> None:
    """chunk() of a conv output exports as run-time-computed Slices of a full-resolution tensor;
    in the split form no Slice reads a Conv output."""
    from export.onnx_export import export_onnx, plan_graphs, sample_inputs

    model = _random_model()

    def sliced_convs(forms: tuple[str, ...]) -> list[str]:
        plan = next(p for p in plan_graphs(export_form(model, forms)) if p.name == "stage1_prox")
        path = tmp_path / f"{'_'.join(forms) or 'plain'}.onnx"
        export_onnx(plan, path, 17, sample_inputs(plan, model.config.prior_dim, 1, 32, 32))
        proto = onnx.load(str(path))
        produced_by = {out: node.op_type for node in proto.graph.node for out in node.output}
        return [n.name for n in proto.graph.node if n.op_type == "Slice" and produced_by.get(n.input[0]) == "Conv"]

    assert sliced_convs(()) != []  # the training modules' chunk()
    assert sliced_convs(("split_projections",)) == []


def test_the_export_names_the_forms_it_wrote(tiny_export) -> None:
    exporter = load_manifest(tiny_export.artifacts).exporter
    assert all(form in exporter for form in KEPT_FORMS)
    assert ("graph forms" in exporter) == bool(KEPT_FORMS)
