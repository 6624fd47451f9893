"""The committed accounts (reports/README.md) are generated from their reports' cells and checked against them."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _accounts(root: Path):
    spec = importlib.util.spec_from_file_location("accounts", ROOT / "scripts" / "accounts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["accounts"] = module
    spec.loader.exec_module(module)
    module.ROOT, module.README = root, root / "reports" / "README.md"
    return module


def test_committed_accounts_match_their_reports_cells():
    accounts = _accounts(ROOT)
    current = accounts.README.read_text(encoding="utf-8")
    assert accounts.render(current) == current, "reports/README.md is stale: run python scripts/accounts.py"


def test_a_regenerated_report_with_a_stale_account_fails_the_check(tmp_path):
    """Change one cell of the report (as a regeneration would) and leave the account: the check must fail."""
    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    cells = tmp_path / "reports" / "quick-cifar10" / "results.csv"
    table = pd.read_csv(cells)
    clean = (
        (table["role"] == "table")
        & (table["attack"] == "none")
        & (table["model.name"] == "tanhconv")
        & (table["model.training"] == "natural")
    )
    table.loc[clean, "accuracy"] = 0.95
    table.to_csv(cells, index=False)
    accounts = _accounts(tmp_path)
    current = accounts.README.read_text(encoding="utf-8")
    fresh = accounts.render(current)
    assert fresh != current and "-95.0%" in fresh


def test_the_shipped_checkpoints_accuracies_are_stated_as_their_cards_give_them():
    """reports/paper-cpu/README.md names each shipped checkpoint's clean accuracy, and so does the paper-cpu section
    of reports/README.md for a model its report does not hold; where the report holds it, its clean cell on the same
    test images is the card's figure. Retrain or replace one and leave the text (or the report), and this fails."""
    import json

    cards = sorted((ROOT / "reports" / "paper-cpu" / "models").glob("*/*/*/*/card.json"))
    assert cards, "no shipped paper-cpu checkpoints"
    shipped = (ROOT / "reports" / "paper-cpu" / "README.md").read_text(encoding="utf-8")
    account = (
        (ROOT / "reports" / "README.md")
        .read_text(encoding="utf-8")
        .split("## paper-cpu", 1)[1]
        .split("<!-- /account paper-cpu -->", 1)[0]
    )
    cells = pd.read_csv(ROOT / "reports" / "paper-cpu" / "results.csv")
    clean = cells[(cells["role"] == "table") & (cells["attack"] == "none")]
    in_report = 0
    for path in cards:
        card = json.loads(path.read_text())
        figure = f"{100 * card['clean_test_accuracy']:.2f}%"
        where = path.parent.relative_to(ROOT)
        assert figure in shipped, f"{where}: {figure} not in reports/paper-cpu/README.md"
        rows = clean[
            (clean["model.name"] == card["model"]["name"])
            & (clean["model.training"] == card["training"]["label"])
            & (clean["model.seed"] == card["seed"])
            & (clean["model.epochs"] == card["epochs"])
            & (clean["subset_n"] == card["test_images"])
        ]
        if len(rows):
            in_report += 1
            right = round(card["clean_test_accuracy"] * card["test_images"])  # the card stores it in fp32
            assert rows["correct"].tolist() == [right], f"{where}: the report's clean cell is not the card's"
        else:
            assert figure in account, f"{where}: {figure} not in the paper-cpu section of reports/README.md"
    assert in_report >= 5  # the report holds the models evaluated so far


def test_the_paper_cpu_trainings_table_states_each_card_as_it_is():
    """reports/paper-cpu/README.md tabulates every shipped checkpoint: each row's clean accuracy, epochs, overfitting
    epoch, folder and training time are its card's, and no card lacks its row."""
    import json
    import re

    folder = ROOT / "reports" / "paper-cpu"
    text = (folder / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| (baseline|sphereconv|ballconv|tanhconv) \|", line)]
    cards = sorted((folder / "models").glob("*/*/*/*/card.json"))
    assert cards and len(rows) == len(cards), "one row per shipped card"
    for path in cards:
        card = json.loads(path.read_text())
        overfit = card["robustness_check"]["catastrophic_overfitting_epoch"]
        cells = [
            card["model"]["name"],
            card["training"]["regime"],
            str(card["seed"]),
            str(card["epochs"]),
            f"{100 * card['clean_test_accuracy']:.2f}%",
        ]
        row = [r for r in rows if [c.strip() for c in r.split("|")[1:6]] == cells]
        assert len(row) == 1, f"{path.parent.relative_to(ROOT)}: no row states {cells}"
        assert f"| {'epoch %d' % overfit if overfit else 'none'} | `{path.parent.name}` |" in row[0]
        assert row[0].rstrip().endswith(f"| {card['wall_time_s'] / 60:.1f} min |")


def test_a_checkpoint_shipped_beside_a_report_but_not_in_its_tables_is_named_with_its_cards_accuracy(tmp_path):
    """A later training seed's checkpoint is committed before its evaluation: the account names it, with the clean
    accuracy of its card, and goes stale when one is added."""
    import json

    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    models = tmp_path / "reports" / "paper-cpu" / "models" / "cifar10" / "tanhconv" / "natural"
    new = models / "cnn9-w0.5-seed7"
    shutil.copytree(models / "cnn9-w0.5-seed0", new)
    card = json.loads((new / "card.json").read_text())
    card["seed"], card["clean_test_accuracy"] = 7, 0.81234
    (new / "card.json").write_text(json.dumps(card))
    accounts = _accounts(tmp_path)
    current = accounts.README.read_text(encoding="utf-8")
    fresh = accounts.render(current)
    assert fresh != current
    assert "- TanhConv, natural, training seed 7, 15 epochs: 81.23% clean on 10,000 test images by its card" in fresh
    assert "TanhConv, natural, training seed 0:" not in fresh  # in the report's tables, so not listed


def test_a_source_trained_longer_beside_a_table_model_of_its_name_and_seed_is_named_as_not_in_the_tables(tmp_path):
    """paper-cpu trains its FGSM models longer than its natural ones, so the black-box source of an FGSM model (a
    natural baseline of the FGSM models' epochs, seed + 1) lies beside the natural baseline of the same seed that
    the tables hold (``cnn9-w0.5-seed1+<hash>/``). The account names it with its card's accuracy; before, it took
    the source for the table model of that name and seed and left it out."""
    import json

    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    models = tmp_path / "reports" / "paper-cpu" / "models" / "cifar10" / "tanhconv" / "natural"
    longer = models / "cnn9-w0.5-seed0+0123456789ab"
    shutil.copytree(models / "cnn9-w0.5-seed0", longer)
    card = json.loads((longer / "card.json").read_text())
    card["epochs"], card["clean_test_accuracy"] = card["epochs"] + 5, 0.81234
    (longer / "card.json").write_text(json.dumps(card))
    accounts = _accounts(tmp_path)
    fresh = accounts.render(accounts.README.read_text(encoding="utf-8"))
    assert "- TanhConv, natural, training seed 0, 20 epochs: 81.23% clean on 10,000 test images by its card" in fresh
    assert "cnn9-w0.5-seed0+0123456789ab" in fresh


def test_an_account_over_several_seeds_quotes_the_seed_mean_and_refuses_a_missing_seed(tmp_path):
    """Over several training seeds an account's figure is the mean of one cell per seed, as the report's tables give
    it; a cell that lacks one of the report's seeds is refused, not averaged with the others (before, a second seed
    stopped every account with 'expected one cell')."""
    shutil.copytree(ROOT / "reports" / "quick-cifar10", tmp_path / "reports" / "quick-cifar10")
    cells = tmp_path / "reports" / "quick-cifar10" / "results.csv"
    table = pd.read_csv(cells)
    second = table[table["role"] == "table"].copy()
    second["model.seed"] = 1
    second["accuracy"] = second["accuracy"] + 0.1
    pd.concat([table, second]).to_csv(cells, index=False)
    accounts = _accounts(tmp_path)
    report = accounts.Report("quick-cifar10")
    one = accounts.Report.__new__(accounts.Report)
    one.cells = table
    assert report.seeds() == [0, 1]
    expected = one.accuracy("tanhconv", "natural", "none", "none", None) + 5.0
    assert abs(report.accuracy("tanhconv", "natural", "none", "none", None) - expected) < 1e-9
    clean = (report.cells["model.seed"] == 1) & (report.cells["model.name"] == "baseline")
    report.cells = report.cells[~clean]
    try:
        report.accuracy("baseline", "natural", "none", "none", None)
    except SystemExit as refused:
        assert "expected one for each of the report's seeds [0, 1]" in str(refused)
    else:
        raise AssertionError("a figure over fewer seeds than the report's was averaged")


def test_an_account_states_each_regimes_epochs_where_a_study_trains_them_for_different_lengths(tmp_path):
    """A study may train its FGSM models longer than its natural ones (``[training.fgsm] epochs``): the accounts say
    so per regime (before, they stopped with 'table cells have 2 values of model.epochs')."""
    shutil.copytree(ROOT / "reports", tmp_path / "reports")
    cells = tmp_path / "reports" / "quick-cifar10" / "results.csv"
    table = pd.read_csv(cells)
    table.loc[table["model.training"] == "fgsm", "model.epochs"] = 7
    table.to_csv(cells, index=False)
    accounts = _accounts(tmp_path)
    fresh = accounts.render(accounts.README.read_text(encoding="utf-8"))
    assert "trained for 12 epochs (natural) and 7 epochs (FGSM)." in fresh
    assert "cnn9 at width 0.25, 12 epochs (natural) and 7 epochs (FGSM), 1,000 test images" in fresh
