"""The Ray launcher's argument checks (no cluster needed). Its end-to-end check, with a Ray head
on loopback and a killed worker, is `bash experiments/ray/run.sh` (recorded in experiments/ray)."""

import importlib.util

import pytest

from hyperctl import cluster


def test_the_launcher_sets_listen_and_workers_itself():
    with pytest.raises(SystemExit) as e:
        cluster.main(["--workers", "2", "--", "--config", "c.toml", "--listen", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cluster.main(["--workers", "0", "--", "--config", "c.toml"])
    assert e.value.code == 2


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed here")
def test_without_ray_it_says_what_to_install(capsys):
    assert cluster.main(["--workers", "1", "--", "--config", "c.toml", "--out", "o"]) == 2
    assert "pip install ray" in capsys.readouterr().err


def test_it_reads_the_learners_address_from_its_first_line():
    line = "meta-train: waiting for 2 workers on 127.0.0.1:40123: hyperctl worker --connect 127.0.0.1:40123 (token: ...)"
    m = cluster.WAITING.search(line)
    assert m and m.group(1) == "2" and m.group(2) == "127.0.0.1:40123"
