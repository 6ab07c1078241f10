"""The dataset cards in ``datasets/``: they load, say what they must, and their commands parse."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CARDS_DIR = REPO / "datasets"
EXPECTED = {"phantom", "luna16", "lidc-idri", "lits", "brats"}
REQUIRED = ("name", "title", "description", "modality", "source", "licence", "format", "layout",
            "intensity", "splits", "used_for", "ingest", "notes", "uncertain")
CSV_COLUMNS = {"path", "patient_id", "label", "modality", "split"}


def _cards() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CARDS_DIR.glob("*.yaml"))}


CARDS = _cards()


def test_not_a_python_package():
    assert not (CARDS_DIR / "__init__.py").exists()
    assert not list(CARDS_DIR.rglob("*.py"))
    assert {p.suffix for p in CARDS_DIR.iterdir()} <= {".yaml", ".md"}


def test_one_card_per_data_set():
    assert set(CARDS) == EXPECTED


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_card_fields(stem):
    card = CARDS[stem]
    missing = [k for k in REQUIRED if k not in card]
    assert not missing, missing
    assert card["name"] == stem
    assert card["modality"] in ("CT", "MR")
    assert card["source"].get("homepage") and card["source"].get("obtained")
    assert card["licence"].get("name") and isinstance(card["licence"].get("verified"), bool)
    assert card["splits"].get("protocol")
    assert "pretraining" in card["used_for"] and "target_tasks" in card["used_for"]
    assert isinstance(card["notes"], list) and isinstance(card["uncertain"], list)
    # An unverified licence must be listed among the uncertain statements.
    if not card["licence"]["verified"]:
        assert any("icence" in u for u in card["uncertain"]), stem


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_window_matches_the_store_default(stem):
    """CT cards state the fixed HU window; MR cards the per-volume rule the ingest applies by default,
    its percentiles, and the fixed window ``ingest.mr_intensity=fixed`` would use instead."""
    from semgen_ray.config import IngestConfig
    from semgen_ray.store import default_window
    from semgen_ray.store.intensity import PERCENTILES

    card = CARDS[stem]
    intensity = card["intensity"]
    assert intensity["maps_to"] == [0, 1]
    default = default_window(card["modality"])
    if card["modality"] == "CT":
        assert intensity["window"] == [default.lo, default.hi]
        return
    ingest = IngestConfig()
    assert intensity["rule"] == ingest.mr_intensity == "foreground_percentile"
    assert intensity["window"] == "per volume" and intensity["percentiles"] == list(PERCENTILES)
    assert intensity["fixed_window"] == list(ingest.mr_window) == [default.lo, default.hi]
    assert "ingest.mr_intensity=fixed" in intensity["applied"]


def _parser(module: str):
    if module == "semgen_ray.ingest":
        from semgen_ray.ingest.__main__ import build_parser
    elif module == "semgen_ray.phantoms":
        from semgen_ray.phantoms.__main__ import build_parser
    else:
        raise AssertionError(f"unexpected command module {module}")
    return build_parser()


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_commands_parse(stem):
    commands = CARDS[stem]["ingest"]["commands"]
    assert commands
    for line in commands:
        words = shlex.split(line)
        assert words[:2] == ["python", "-m"], line
        args = _parser(words[2]).parse_args(words[3:])  # exits (SystemExit) on an unknown option
        assert args.out
        if words[2] == "semgen_ray.ingest":
            assert args.modality == CARDS[stem]["modality"]
            for source in args.sources:
                # The CSV list a card's prepare step writes is the one its command ingests.
                if source.endswith(".csv"):
                    assert source in CARDS[stem]["ingest"]["prepare"], source


@pytest.mark.parametrize("stem", sorted(EXPECTED - {"phantom"}))
def test_csv_template_columns(stem):
    template = CARDS[stem]["ingest"]["csv_template"].strip().splitlines()
    header = template[0].split(",")
    assert header[0] == "path" and set(header) <= CSV_COLUMNS
    for row in template[1:]:
        assert len(row.split(",")) == len(header), row


def test_luna16_subsets():
    splits = CARDS["luna16"]["splits"]
    pre, ncc = splits["pretraining"], splits["ncc"]
    assert pre["train"] == [0, 1, 2, 3, 4] and pre["val"] == [5, 6] and pre["never"] == [7, 8, 9]
    assert ncc["test"] == pre["never"]
    for split in (pre, ncc):
        parts = list(split.values())
        assert sorted(s for part in parts for s in part) == list(range(10))
    # The pretraining command never sees subsets 7-9.
    prepare = CARDS["luna16"]["ingest"]["prepare"]
    pretrain_block = prepare.split("> luna16_pretrain.csv")[0]
    assert "7 8 9" not in pretrain_block


def test_lits_ranges():
    ranges = CARDS["lits"]["splits"]["ranges"]
    counts = CARDS["lits"]["splits"]["counts"]
    edges = [ranges["train"], ranges["val"], ranges["test"]]
    assert edges[0][0] == 0 and edges[-1][1] == 129
    for (_, hi), (lo, _) in zip(edges, edges[1:]):
        assert lo == hi + 1
    for name, (lo, hi) in ranges.items():
        assert counts[name] == hi - lo + 1


def test_brats_counts():
    counts = CARDS["brats"]["splits"]["counts"]
    assert counts["test"] == 95
    assert counts["val"] == (2 * 95) // 8 and counts["train"] == 2 * 95 - counts["val"]
    assert CARDS["brats"]["modality"] == "MR"
