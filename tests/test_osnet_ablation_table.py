"""The ablation driver's table and per-pair verdicts (benchmarks/osnet_ablation.py) on a
hand-computed case: the README's "beyond / within the seeds' spread" claims come from it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "osnet_ablation.py"


def _table(runs: list[dict]) -> str:
    spec = importlib.util.spec_from_file_location("osnet_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table({"runs": runs})


def _run(preset: str, rank1: float, m_ap: float, minutes: float) -> dict:
    return {
        "preset": preset,
        "rank1": rank1,
        "rank5": 0.9,
        "rank10": 0.95,
        "mAP": m_ap,
        "mINP": 0.5,
        "minutes": minutes,
    }


def test_table_means_stds_and_verdicts_match_hand_computation() -> None:
    runs = [
        _run("sona_bl_dbplus_osnet_cpu", 0.70, 0.70, 12.0),
        _run("sona_bl_dbplus_osnet_cpu", 0.72, 0.72, 14.0),
        _run("sona2_net_osnet_cpu", 0.75, 0.71, 13.0),
        _run("sona2_net_osnet_cpu", 0.77, 0.73, 13.0),
        _run("ccan_g_osnet_cpu", 0.60, 0.60, 9.0),
        _run("ccan_osnet_cpu", 0.70, 0.70, 25.0),
    ]
    text = _table(runs)
    # rank-1 71.0 and 76.0, each with sample std sqrt(2) = 1.41; minutes median 13.0
    assert (
        "| SONA: BL + DB+ | `sona_bl_dbplus_osnet_cpu` | 2 | 71.0 ± 1.4 | 90.0 ± 0.0 | "
        "95.0 ± 0.0 | 71.0 ± 1.4 | 50.0 ± 0.0 | 13.0 |" in text
    )
    # one seed: no ± and no verdict beyond "undecided"; no runs: dashes
    assert "| CCAN: G | `ccan_g_osnet_cpu` | 1 | 60.0 | 90.0 | 95.0 | 60.0 | 50.0 | 9.0 |" in text
    assert (
        "| SA-ResNet: plain | `sa_resnet50_plain_osnet_cpu` | 0 | — | — | — | — | — | — |" in text
    )
    # +5.0 against a spread of 2 * 1.41 = 2.83; +1.0 within it
    assert (
        "- sona2_net_osnet_cpu vs sona_bl_dbplus_osnet_cpu, rank1: +5.0 "
        "(beyond the seeds' spread 2.8; 2 and 2 seeds)" in text
    )
    assert (
        "- sona2_net_osnet_cpu vs sona_bl_dbplus_osnet_cpu, mAP: +1.0 "
        "(within the seeds' spread 2.8; 2 and 2 seeds)" in text
    )
    assert (
        "- ccan_osnet_cpu vs ccan_g_osnet_cpu, rank1: +10.0 "
        "(undecided: one seed has no spread to compare with; 1 and 1 seeds)" in text
    )
    assert "duatm_osnet_cpu vs" not in text  # pairs without runs print no verdict


def test_steps_change_one_group_at_a_time_and_end_at_each_target() -> None:
    """benchmarks/osnet_steps.py: every step differs from the one before only in its group of
    settings, trains on the validation split, and a family's last step is its target preset
    (``steps()`` refuses otherwise)."""
    spec = importlib.util.spec_from_file_location("osnet_steps", SCRIPT.with_name("osnet_steps.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    all_steps = module.steps()
    assert all(s["config"]["data"]["validation_ids"] == 100 for s in all_steps)
    previous = all_steps[0]
    for step in all_steps[1:]:
        if step["family"] != previous["family"]:
            previous = all_steps[0]
        a, b = module._leaves(previous["config"]), module._leaves(step["config"])
        changed = {k for k in b if a.get(k) != b[k]} - module.BOOKKEEPING
        group = step["label"].split(": ", 1)[1].split(", ")
        assert changed and all(any(k.startswith(g) for g in group) for k in changed), changed
        previous = step


def _driver():
    spec = importlib.util.spec_from_file_location("driver", SCRIPT.with_name("driver.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_claimed_by_a_live_process_is_skipped_and_a_killed_ones_claim_is_free(tmp_path):
    """Two copies of a driver share the runs: a run another live process has claimed is
    skipped; once that process is killed (no clean-up of its own), the run can be claimed."""
    driver = _driver()
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "from driver import claim\n"
        "with claim(Path(sys.argv[2])) as mine:\n"
        "    print(mine, flush=True); time.sleep(60)"
    )
    other = subprocess.Popen([sys.executable, "-c", code, str(SCRIPT.parent), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "True"  # it holds the claim
        with driver.claim(tmp_path) as mine:
            assert mine is False
    finally:
        other.kill()  # SIGKILL: its with-block never finishes
        other.wait()
    with driver.claim(tmp_path) as mine:
        assert mine is True
        with driver.claim(tmp_path) as again:  # a second claim, even by the same process
            assert again is False


def test_rows_appended_by_two_processes_at_once_are_all_kept(tmp_path):
    """``append_row`` under a lock: 2 processes x 40 rows, none lost."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from driver import append_row;"
        "from pathlib import Path\n"
        "for i in range(40): append_row(Path(sys.argv[2]), 'runs', {'who': sys.argv[3], 'i': i})"
    )
    out = tmp_path / "results.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(SCRIPT.parent), str(out), who])
        for who in "ab"
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = json.loads(out.read_text())["runs"]
    assert sorted((r["who"], r["i"]) for r in rows) == [(w, i) for w in "ab" for i in range(40)]


def test_choice_table_is_the_mean_and_std_of_the_seeds_beside_the_measured_latency(
    tmp_path, monkeypatch, capsys
):
    """benchmarks/plot_choice.py on hand-made files: R1 80 and 84 give 82.0 ± 2.8 (sample std),
    one seed prints as such, a re-scored row (``:feature``) takes its network's latency, a
    preset without a latency row is left out, and the PNG is written."""
    spec = importlib.util.spec_from_file_location("plot_choice", SCRIPT.with_name("plot_choice.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base, duatm = "osnet_x0_25_cuhk01_cpu", "osnet_x0_25_duatm_plugin_cpu"
    runs = [
        {"preset": base, "rank1": 0.80, "mAP": 0.70},
        {"preset": base, "rank1": 0.84, "mAP": 0.72},
        {"preset": f"{duatm}:feature", "rank1": 0.83, "mAP": 0.81},
        {"preset": "ccan_osnet_cpu", "rank1": 0.8, "mAP": 0.8},  # no latency row
    ]
    latency = [
        {"label": base, "median_ms": 15.0, "params_m": 0.59, "gflops": 0.16},
        {"label": duatm, "median_ms": 16.0, "params_m": 0.88, "gflops": 0.17},
    ]
    (tmp_path / "r.json").write_text(json.dumps({"runs": runs}))
    (tmp_path / "l.json").write_text(json.dumps(latency))
    out = tmp_path / "choice.png"
    argv = ["plot_choice", "--results", str(tmp_path / "r.json"), "--latency",
            str(tmp_path / "l.json"), "-o", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert module.main() == 0
    text = capsys.readouterr().out
    assert f"(`{base}`) | plain | 2 | 82.0 ± 2.8 | 71.0 ± 1.4 | 15.0 | 0.59 |" in text
    assert "| 83.0 (one seed) | 81.0 (one seed) | 16.0 | 0.88 | 0.17 |" in text
    assert "ccan_osnet_cpu" not in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
