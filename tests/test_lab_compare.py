"""Comparisons: determinism, workers, resume, atomic writes, and the pictures and report."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from descend.lab.compare import CompareConfig, compare
from descend.lab.report import SUMMARY, write_pictures, write_report
from descend.lab.store import atomic_write, check_writable

SMALL = {"optimizers": ["sgd", "adam"], "problems": ["saddle", "softmax-iris"], "steps": 30, "seeds": 2}


def _rows(outcome):
    return [{k: v for k, v in row.items() if k not in ("wall_time", "seconds_to_tol")} for row in outcome.rows()]


def test_same_seed_same_results_other_seed_other_results():
    first = compare(CompareConfig(**SMALL, seed=3))
    again = compare(CompareConfig(**SMALL, seed=3))
    other = compare(CompareConfig(**SMALL, seed=4))
    assert _rows(first) == _rows(again)
    assert _rows(first) != _rows(other)


def test_workers_do_not_change_the_results():
    one = compare(CompareConfig(**SMALL), jobs=1)
    two = compare(CompareConfig(**SMALL), jobs=2)
    assert _rows(one) == _rows(two)


def test_fixed_lr_turns_tuning_off():
    outcome = compare(CompareConfig(**SMALL, lr=0.05))
    assert {row["lr"] for row in outcome.rows()} == {0.05}
    assert all(cell.trials == [] for cell in outcome.cells.values())
    untuned = compare(CompareConfig(**SMALL, tune=False, convention="torch"))
    assert {row["lr"] for row in untuned.rows() if row["optimizer"] == "adam"} == {0.001}


def test_resume_keeps_finished_cells_and_reruns_changed_ones(tmp_path):
    first = compare(CompareConfig(**SMALL), tmp_path)
    saved = tmp_path / "runs" / "saddle__adam.json"
    assert saved.exists()
    again = compare(CompareConfig(**SMALL), tmp_path, resume=True)
    assert len(again.resumed) == 4
    assert _rows(again) == _rows(first)
    changed = compare(CompareConfig(**{**SMALL, "steps": 31}), tmp_path, resume=True)
    assert changed.resumed == []
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["steps"] == 31
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert "test_accuracy" in header and "success_rate" in header


def test_an_interrupted_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")

    def crash(handle):
        handle.write(b"half of a new fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_unwritable_output_folders_are_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        check_writable(blocker)
    with pytest.raises(ValueError, match="cannot be written"):
        check_writable(blocker / "below")


def test_bad_settings_are_refused_before_anything_runs():
    for bad, says in [
        ({"steps": 0}, "steps"),
        ({"seeds": -1}, "seeds"),
        ({"lr": -0.1}, "lr"),
        ({"optimizers": ["sgdd"]}, "sgdd"),
        ({"problems": ["nope"]}, "nope"),
        ({"convention": "jax"}, "jax"),
    ]:
        with pytest.raises(ValueError, match=says):
            compare(CompareConfig(**{**SMALL, **bad}))


def test_every_picture_is_a_valid_image_and_the_report_shows_each(tmp_path):
    outcome = compare(
        CompareConfig(optimizers=["sgd", "momentum", "adam"], problems=["beale", "softmax-iris"], steps=40, seeds=2),
        tmp_path,
    )
    pictures = write_pictures(outcome, tmp_path, summary=True)
    kinds = {name: [k for k, _ in made] for name, made in pictures.items()}
    assert kinds == {
        SUMMARY: ["profile", "target", "lr"],
        "beale": ["loss", "contour", "animation"],
        "softmax-iris": ["loss"],
    }
    report = write_report(outcome, tmp_path, pictures).read_text()
    for made in pictures.values():
        for _, path in made:
            with Image.open(path) as image:
                image.load()
                assert image.width > 200 and image.height > 200
                pixels = np.asarray(image.convert("RGB"))
                assert pixels.std() > 10  # not a blank canvas
                if path.suffix == ".gif":
                    assert image.n_frames > 10
                else:
                    assert image.mode == "P"  # palette PNGs keep the report small
            assert f'title="{path.name}"' in report
    assert report.count("data:image/png;base64,") == 6 and 'src="paths_beale.gif"' in report
    assert "Tuning." in report and "test acc" in report
    # the verdict comes before the per-problem sections
    assert report.index("Verdict") < report.index("Performance profile") < report.index('id="beale"')
