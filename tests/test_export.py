import json

import torch

from conftest import latest_run


def test_exported_student_predicts_like_the_checkpoint(cli, outputs):
    cli("distill", "experiment=smoke")
    run = latest_run(outputs, "distill")
    cli("export", f"run={run}")
    info = json.loads((latest_run(outputs, "export") / "export.json").read_text())
    program = torch.export.load(info["program"]).module()

    from kdrec.data.spec import FeatureMap
    from kdrec.models.registry import build_model

    state = torch.load(run / "student.pt", weights_only=True)
    fmap = FeatureMap.load(info["feature_map"])
    student = build_model(state["student"], fmap)
    student.load_state_dict(state["state_dict"])
    student.eval()
    g = torch.Generator().manual_seed(0)
    for batch in (1, 7, 300):  # dynamic batch dimension
        x = torch.stack([torch.randint(0, v, (batch,), generator=g) for v in fmap.vocab_sizes], 1)
        assert torch.allclose(program(x), student(x), atol=1e-6)


def test_cin_and_xdeepfm_export_through_the_unchunked_path(tmp_path):
    """CIN runs over row chunks in a custom autograd function in eager mode; torch.export traces
    its one-pass form instead, which must predict the same for any batch size."""
    from kdrec.data.spec import FeatureMap, FieldInfo
    from kdrec.models.registry import build_model
    from kdrec.stages.export import export_student

    fmap = FeatureMap("t", [FieldInfo(f"f{i}", 9) for i in range(4)])
    g = torch.Generator().manual_seed(0)
    for name in ("cin", "xdeepfm"):
        torch.manual_seed(0)
        model = build_model({"name": name, "cin_layers": [5, 3], "embed_dim": 4}, fmap).eval()
        (tmp_path / name).mkdir()
        path = export_student(model, torch.randint(0, 9, (8, 4), generator=g), tmp_path / name)
        assert path.suffix == ".pt2"
        program = torch.export.load(path).module()
        for batch in (1, 7, 300):
            x = torch.randint(0, 9, (batch, 4), generator=g)
            torch.testing.assert_close(program(x), model(x), rtol=1e-5, atol=1e-5)
