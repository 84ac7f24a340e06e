"""The README's shell walkthrough (examples/two_nodes.sh) runs as written.

The walkthrough uses the README's ports 7401 and 7402; the test runs it on
two free ports instead (the only change to the script's text), so it does
not collide with anything else on the machine listening there, such as a
concurrent test run.
"""

from walkthroughs import ROOT, readme_shows, run_walkthrough

SCRIPT = ROOT / "examples" / "two_nodes.sh"
README_PORTS = ("7401", "7402")


def test_readme_shows_the_walkthrough_verbatim():
    assert readme_shows(SCRIPT), "README.md must show examples/two_nodes.sh"


def test_two_nodes_walkthrough_runs(tmp_path):
    # Each port: its init and the peer add.
    result = run_walkthrough(SCRIPT, README_PORTS, 2, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("hello bob", "one", "two", "any bytes"):
        assert text in out
    assert '"seq":3' in out and '"seq":1' not in out.split("any bytes", 1)[1]
    assert "reachable" in out
    assert "got them" in out and "(own)" in out, "tail --all shows alice's own messages"
    assert "no problems found" in out, "mvds doctor on a healthy pair"
