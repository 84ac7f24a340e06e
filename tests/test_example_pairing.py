"""The README's pairing walkthrough (examples/pairing.sh) runs as written
(on two free ports instead of 7411 and 7412, the only change)."""

from walkthroughs import ROOT, readme_shows, run_walkthrough

SCRIPT = ROOT / "examples" / "pairing.sh"
PORTS = ("7411", "7412")


def test_readme_shows_the_pairing_walkthrough_verbatim():
    assert readme_shows(SCRIPT), "README.md must show examples/pairing.sh"


def test_pairing_walkthrough_runs(tmp_path):
    result = run_walkthrough(SCRIPT, PORTS, 1, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "paired with carol" in out and "sharing chat" in out
    assert "hello dave" in out  # dave's tail shows carol's message; the ACKs came both ways
    assert "a code works once" in out
    assert "the inviting node refused or did not answer: the code may be expired or used" in result.stderr
    assert 'name = "dave"' in (tmp_path / "carol" / "mvds.toml").read_text()
    assert 'name = "carol"' in (tmp_path / "dave" / "mvds.toml").read_text()
