"""The ablation benchmark's verdict is computed from its figures, never fixed in the text."""

from __future__ import annotations

from bench.synthetic_ablation import mean_sd, verdict


def runs(pairs: list[tuple[float, float]]) -> list[dict[str, float]]:
    return [{"pa_mpjpe": pa, "accel_error": accel} for pa, accel in pairs]


BASE = runs([(80.0, 100.0), (82.0, 110.0), (84.0, 90.0)])
MEAN_POSE = [150.0, 148.0, 152.0]
PER_FRAME = [70.0, 71.0, 72.0]


def judge(tcmr: list[dict[str, float]]) -> list[str]:
    return verdict(BASE, tcmr, MEAN_POSE, PER_FRAME)


def test_mean_sd_is_the_sample_sd() -> None:
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_far_lower_accel_at_similar_pa_is_reproduced() -> None:
    # paired differences +1, -1, +1: mean 0.33, sd 1.15, standard error 0.67
    learning, ratio, _, outcome = judge(runs([(81.0, 30.0), (81.0, 33.0), (85.0, 27.0)]))
    assert "baseline 82.0, TCMR 82.3 mm vs mean pose 150.0 and per-frame ridge 71.0" in learning
    assert "accel error x0.30" in ratio
    assert "+0.33 mm (paired per seed +1.0, -1.0, +1.0; sd 1.15, standard error 0.67" in ratio
    assert "within seed noise" in ratio
    assert outcome.endswith(": reproduced")


def test_consistently_worse_pa_reproduces_only_the_accel_half() -> None:
    # +5, +4, +6 mm: each seed worse, though less than twice one model's seed sd (2 mm)
    _, ratio, _, outcome = judge(runs([(85.0, 30.0), (86.0, 30.0), (90.0, 30.0)]))
    assert "worse beyond seed noise" in ratio
    assert outcome.endswith("only the accel half reproduced (PA-MPJPE worse)")


def test_accel_not_halved_is_not_reproduced() -> None:
    _, ratio, _, outcome = judge(runs([(80.0, 60.0), (82.0, 60.0), (84.0, 60.0)]))
    assert "x0.60" in ratio
    assert outcome.endswith("NOT reproduced (accel error not far lower)")


def test_a_model_no_better_than_the_mean_pose_makes_it_inconclusive() -> None:
    _, _, _, outcome = judge(runs([(149.0, 10.0), (150.0, 10.0), (151.0, 10.0)]))
    assert "inconclusive" in outcome


def test_one_seed_has_no_noise_estimate() -> None:
    _, ratio, _, outcome = verdict(BASE[:1], runs([(79.0, 20.0)]), [150.0], [70.0])
    assert "one seed, no noise estimate" in ratio
    assert outcome.endswith(": reproduced")
