"""Where results go when nobody says: the user's data folder, never the current directory."""

from pathlib import Path

from robustbench_dc.workspace import WORKSPACE_ENV, default_workspace, workspace_dir


def test_the_default_workspace_is_the_users_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(WORKSPACE_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert workspace_dir() == default_workspace() == tmp_path / "data" / "robustbench-dc"
    assert workspace_dir().is_absolute() and not list(Path.cwd().iterdir())  # nothing made in the current directory
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "env"))
    assert workspace_dir() == tmp_path / "env" and workspace_dir("given") == Path("given")
