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
