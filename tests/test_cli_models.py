"""`vitkit models`: the zoo table with exact parameters and counted GFLOPs."""

import json

from click.testing import CliRunner

from vitkit.cli import main
from vitkit.flops import count_forward_flops
from vitkit.variants import model_config


def test_models_json_lists_the_zoo_with_exact_counts():
    result = CliRunner().invoke(main, ["models", "--filter", "vit_b", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["models"]}
    assert set(rows) == {"vit_b32", "vit_b16", "vit_b14", "vit_b8", "vit_b4"}
    assert rows["vit_b16"]["params"] == 86_567_656 and rows["vit_b16"]["tokens"] == 197
    assert abs(rows["vit_b16"]["gflops"] - 35.13) < 0.01  # 17.56 GMACs, the published figure


def test_flops_scale_with_batch_and_resolution():
    c = model_config("vit_ti16", img_size=32, num_classes=10)
    assert count_forward_flops(c, batch=4) == 4 * count_forward_flops(c)
    assert count_forward_flops(model_config("vit_ti16", img_size=64)) > 3 * count_forward_flops(c)


def test_models_table_for_people():
    result = CliRunner().invoke(main, ["models", "--img-size", "384", "--filter", "vit_l16"])
    assert result.exit_code == 0 and "vit_l16" in result.output and "577" in result.output
