"""Smoke test of the figure scripts in examples/: each runs at its `--quick` scale and the figure's claim is checked
at that scale, where possible against a number computed here independently of the script (scikit-learn, scipy,
the data's generating parameters).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA

from entropy_elbo.data import ppca, ppca_truth, stream_phases

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import _common  # noqa: E402


def run_example(name: str, out: Path) -> _common.Claims:
    """Import examples/<name>.py and run it at the quick scale, writing its PNGs to out."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = _common.parser(name).parse_args(["--quick", "--out", str(out)])
    return module.run(args)


def assert_png(path: Path) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 200


@pytest.mark.slow  # runs an example script: `make test-all`
def test_fig1a_linear_vae_elbo_is_the_ppca_log_likelihood(tmp_path: Path) -> None:
    claims = run_example("fig1a_linear_ppca", tmp_path)
    v = claims.values
    assert claims.exit_code == 0, claims.failed
    assert abs(v["median"]) < 0.005
    x = ppca(4000, seed=0)[:2000]  # the script's training half at this scale
    ml = PCA(n_components=2).fit(x).score(x)  # maximum-likelihood pPCA, independent of our code
    assert abs(v["entropy_elbo"] - ml) < 0.005 * abs(ml)
    t = ppca_truth(0)
    truth = multivariate_normal(t["mu"], t["W"] @ t["W"].T + t["sigma2"] * np.eye(10)).logpdf(x).mean()
    assert v["ground_truth"] == pytest.approx(truth, rel=1e-9)
    assert abs(v["fixed_relative"]) > 0.05  # sigma^2 fixed: the entropy form is far off
    assert_png(tmp_path / "fig1a_linear_ppca.png")


@pytest.mark.slow  # runs an example script: `make test-all`
def test_fig1c_vae3_relative_difference_over_seeds(tmp_path: Path) -> None:
    claims = run_example("fig1c_vae3_ring", tmp_path)
    rel = claims.values["relative_difference"]
    assert claims.exit_code == 0, claims.failed
    assert len(rel) == 5 and abs(np.median(rel)) < 0.005 and np.mean(np.abs(rel)) < 0.005
    assert_png(tmp_path / "fig1c_vae3_ring.png")


@pytest.mark.slow  # runs an example script: `make test-all`
def test_fig3a_entropy_bic_picks_each_phase_dimension(tmp_path: Path) -> None:
    claims = run_example("fig3a_stream_bic", tmp_path)
    assert claims.exit_code == 0, claims.failed
    assert claims.values["entropy_picks"] == [p.dim for p in stream_phases(1)]
    assert min(claims.values["std_ratio"]) > 5
    assert_png(tmp_path / "fig3a_stream_bic.png")


@pytest.mark.slow  # runs an example script: `make test-all`
def test_fig5_6_entropy_elbo_variance_is_far_lower(tmp_path: Path) -> None:
    claims = run_example("fig5_6_manifold", tmp_path)
    assert claims.exit_code == 0, claims.failed
    ratios = claims.values["variance_ratio"]
    assert len(ratios) == 6 and min(ratios.values()) >= 10  # mc1 and mc100 at three subset sizes
    assert_png(tmp_path / "fig5_manifold.png")
    assert_png(tmp_path / "fig6_manifold_estimators.png")


@pytest.mark.slow  # runs an example script: `make test-all`
def test_fig7_fixed_sigma2_collapses_more(tmp_path: Path) -> None:
    claims = run_example("fig7_collapse", tmp_path)
    v = claims.values
    assert claims.exit_code == 0, claims.failed
    assert v["active_fixed"] <= 2 < v["active_learned"] <= 20
    assert_png(tmp_path / "fig7_collapse.png")


def test_a_failed_claim_makes_the_exit_code_nonzero(capsys) -> None:
    claims = _common.Claims("Fig. X")
    assert claims.check("a", "b", True) and claims.exit_code == 0
    assert not claims.check("paper says", "we measured", False)
    assert claims.exit_code == 1 and claims.failed == ["paper says"]
    assert "[FAIL] Fig. X | paper: paper says" in capsys.readouterr().out


@pytest.mark.slow  # runs an example script: `make test-all`
def test_real_data_entropy_elbo_on_scikit_learns_digits_and_breast_cancer(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer, load_digits

    claims = run_example("real_data", tmp_path)
    assert claims.exit_code == 0, claims.failed
    digits, cancer = load_digits().data, load_breast_cancer().data
    for name, rows in (("digits VAE-1", digits), ("breast_cancer VAE-1", cancer), ("digits conv VAE-1", digits)):
        v = claims.values[name]
        assert (v["n_train"] + v["n_heldout"], v["d"]) == rows.shape  # the rows scikit-learn ships, 20% held out
        assert v["n_heldout"] == round(0.2 * len(rows))
        assert abs(v["relative_difference"]) < 0.02 and abs(v["r"] - 1) < 0.08
        assert 1 <= v["active"]["entropy"] < v["h"]
    assert_png(tmp_path / "real_data.png")


DOCS = EXAMPLES.parent / "docs" / "reproduction.md"


def summary_rows() -> dict[str, list[str]]:
    """docs/reproduction.md's summary table: the cells of each row whose first cell is a claim's `key`."""
    text = DOCS.read_text().split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 7:
            rows[cells[0].strip("`")] = cells
    return rows


def code_spans(cell: str) -> list[str]:
    return cell.split("`")[1::2]


def test_reproduce_has_a_line_for_every_claim_of_the_docs_at_the_docs_threshold() -> None:
    """Every row of the summary table is a claim of examples/reproduce.py, with the threshold, the quick mode's
    threshold and the full-mode command the docs state, and no claim of the script is missing from the docs."""
    import reproduce

    rows = summary_rows()
    claims = {c.key: c for c in reproduce.CLAIMS}
    assert len(rows) >= 15 and set(rows) == set(claims)
    for key, cells in rows.items():
        claim, (threshold, quick, command) = claims[key], (cells[3], cells[4], cells[6])
        assert code_spans(threshold) == [claim.threshold], key
        reproduce.Threshold.parse(claim.threshold)  # a threshold the script can check
        if claim.quick == "not checked":
            assert quick.startswith("not checked"), key
        elif claim.quick:
            assert code_spans(quick) == [claim.quick] and "looser" in quick, key
            reproduce.Threshold.parse(claim.quick)
        else:
            assert quick == "the same", key
        assert claim.full in code_spans(command), key


def test_reproduce_checks_the_threshold_it_prints() -> None:
    import reproduce

    t = reproduce.Threshold.parse("abs(median) < 0.5%")
    assert t.bound == 0.005 and t.holds([0.004, -0.006, -0.004]) == (True, 0.004)
    assert not t.holds([0.006, 0.0055, -0.001])[0]
    assert reproduce.Threshold.parse("mean(abs) < 0.5%").holds([0.004, -0.007, 0.0])[1] == pytest.approx(11 / 3000)
    assert reproduce.Threshold.parse("min >= 10x").holds([12.0, 10.0])[0]
    assert not reproduce.Threshold.parse("max <= 2").holds([0, 3])[0]
    with pytest.raises(ValueError, match="threshold 'median ~ 1'"):
        reproduce.Threshold.parse("median ~ 1")
    looser = reproduce.Claim("x", "real", "a claim", "v", "abs(median) < 0.5%", "python x.py", "abs(median) < 2%")
    line, ok = reproduce.verdict(looser, [-0.006, -0.004, -0.005, -0.0052, -0.007], quick=True)
    assert ok and line.startswith("[PASS] x | a claim")
    assert "threshold abs(median) < 2% (quick; the docs' full claim: abs(median) < 0.5%): +0.520%" in line
    assert "n = 5 seeds" in line and "full: python x.py" in line
    line, ok = reproduce.verdict(looser, [-0.006, -0.004, -0.005, -0.0052, -0.007], quick=False)
    assert not ok and line.startswith("[FAIL] x | ") and "threshold abs(median) < 0.5%: +0.520%" in line
    assert "median -0.520% (IQR -0.600% .. -0.500%)" in line
    fig5 = next(c for c in reproduce.CLAIMS if c.key == "fig5-gap")
    line, ok = reproduce.verdict(fig5, [0.02, 0.03], quick=True)
    assert ok and line.startswith("[INFO]") and "not checked at the quick scale" in line


def test_figures_say_where_their_settings_differ_from_the_papers() -> None:
    """Each figure's title (the scripts' DIFFERS) and its caption in docs/reproduction.md name the paper's settings
    beside ours (fig1a, fig1c, fig5, fig7's fixed-variance panel)."""
    import fig1a_linear_ppca
    import fig1c_vae3_ring
    import fig5_6_manifold
    import fig7_collapse

    for module, ours, papers in ((fig1a_linear_ppca, "batch 250, lr 1e-2, 300 epochs", "batch 2000, lr 1e-3"),
                                 (fig1c_vae3_ring, "500 points, 400 epochs", "10,000 points, 2,000 epochs"),
                                 (fig5_6_manifold, "1,000 epochs", "200 epochs"),
                                 (fig7_collapse, "manifold data", "CelebA with KL annealing")):
        assert "differ from the paper's" in module.DIFFERS and ours in module.DIFFERS and papers in module.DIFFERS
    assert "CelebA, KL annealing" in fig7_collapse.FIXED_NOTE  # the sigma^2 = 1 panel's own title
    docs = DOCS.read_text()
    for png, words in (("fig1a_linear_ppca", "batch 250"), ("fig1c_vae3_ring", "500 points"),
                       ("fig6_manifold_estimators", "1,000 epochs"), ("fig7_collapse", "CelebA with KL annealing")):
        caption = docs.split(f"(figures/{png}.png)", 1)[1].split("\n\n", 2)[1]
        assert caption.startswith("*") and "differ from the paper's" in caption and words in caption, png


def test_a_single_run_is_a_line_not_an_interquartile_range() -> None:
    plt = _common.pyplot()
    rows = [{"epoch": e, "relative_gap": 0.001 * e} for e in range(10)]
    fig, (one, many) = plt.subplots(1, 2)
    _common.gap_band(one, [rows])
    _common.gap_band(many, [rows, rows, rows])
    assert not one.collections and [t.get_text() for t in one.get_legend().get_texts()] == ["one run"]
    assert len(many.collections) == 1  # the band
    assert "interquartile range (3 runs)" in [t.get_text() for t in many.get_legend().get_texts()]
    plt.close(fig)
