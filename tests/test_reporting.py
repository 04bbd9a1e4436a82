"""Run outputs that survive kills: a torn metrics line, stale temporary files in the store."""

from __future__ import annotations

from restorekit.fileio import atomic_path, remove_temporaries
from restorekit.store import add_to_store, models_dir
from restorekit.train.reporting import MetricsLog, read_metrics
from restorekit.weights import WeightInfo, save_weights


def test_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr')
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write("train", 2, {"loss": 0.5})
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and records[1]["loss"] == 0.5


def test_remove_temporaries_keeps_other_files(tmp_path):
    (tmp_path / ".model.safetensors.ab12cd_3.tmp").write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("mine")
    (tmp_path / "model.safetensors").write_bytes(b"done")
    removed = remove_temporaries(tmp_path)
    assert [p.name for p in removed] == [".model.safetensors.ab12cd_3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "notes.tmp"]


def test_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_store_add_cleans_stale_copies(tmp_path):
    import torch

    net = torch.nn.Conv2d(3, 3, 1)
    src = tmp_path / "w.safetensors"
    save_weights(net, src, WeightInfo("x", {}))
    folder = models_dir() / "mine"
    folder.mkdir(parents=True)
    (folder / ".20260101T000000000000Z-user-aaaa.safetensors.k9x8_1.tmp").write_bytes(b"half")
    stored = add_to_store("mine", src)
    assert [p.name for p in folder.iterdir()] == [stored.name]
