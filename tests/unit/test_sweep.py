import csv
import json

import yaml

from vae_cli.runs.sweeps.summary import write_summary


def test_summary_table_lists_every_job_with_overrides_and_metrics(tmp_path):
    for job, (ld, elbo) in enumerate([(2, -250.0), (16, -240.5)]):
        d = tmp_path / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["trainer.epochs=3", f"model.latent_dim={ld}"]))
        (d / "metrics.json").write_text(json.dumps({"test/elbo": elbo, "val/elbo": elbo + 1, "epochs": 3}))
    failed = tmp_path / "2" / ".hydra"
    failed.mkdir(parents=True)
    (failed / "overrides.yaml").write_text(yaml.safe_dump(["trainer.epochs=3", "model.latent_dim=99"]))
    csv_path, md_path = write_summary(tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    # One column per swept key; the fixed override (trainer.epochs) stays out of the table's columns.
    assert list(rows[0])[:3] == ["job", "model.latent_dim", "val/elbo"]
    assert [r["model.latent_dim"] for r in rows] == ["2", "16", "99"]
    assert rows[0]["overrides"] == "trainer.epochs=3 model.latent_dim=2"
    assert float(rows[1]["test/elbo"]) == -240.5
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    md = md_path.read_text().splitlines()
    table = md[: md.index("")]
    assert len(table) == 2 + 3 and md[3].startswith("| 1 | 16 | -239.500 |") and "-240.500" in md[3]
    # The best job is said, with the metric that chose it (the one vae-compare ranks by).
    assert md[3].endswith("| yes |") and md[-1].startswith("best: the highest val/elbo (")
